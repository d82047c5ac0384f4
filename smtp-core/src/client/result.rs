//! What a transaction came to: a reply for every recipient, one refusal never hiding the
//! others.

use crate::address::ForwardPath;
use crate::reply::Reply;

/// The outcome for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientResult {
    /// The recipient.
    pub address: ForwardPath,
    /// The reply to its RCPT.
    pub reply: Reply,
    /// Under LMTP, the reply after the message for this recipient.
    pub delivery: Option<Reply>,
}

impl RecipientResult {
    /// True when the server took the message for this recipient.
    pub fn is_accepted(&self) -> bool {
        self.reply.is_completion() && self.delivery.as_ref().is_none_or(|d| d.is_completion())
    }
}

/// The outcome of one transaction: a reply for each step and each recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionResult {
    /// The reply to MAIL FROM.
    pub mail: Reply,
    /// One entry per recipient, in envelope order.
    pub recipients: Vec<RecipientResult>,
    /// The final reply after the message (the last one under LMTP), or the refusal of
    /// DATA/BDAT; `None` when the message was never sent.
    pub data: Option<Reply>,
}

impl TransactionResult {
    /// True when the message was accepted for at least one recipient.
    pub fn is_success(&self) -> bool {
        // Under LMTP `data` is only the last recipient's delivery reply: the per-recipient
        // deliveries (which `is_accepted` checks) decide, not whether the last one failed.
        let lmtp = self.recipients.iter().any(|r| r.delivery.is_some());
        self.mail.is_completion()
            && (lmtp || self.data.as_ref().is_some_and(Reply::is_completion))
            && self.recipients.iter().any(RecipientResult::is_accepted)
    }

    /// The recipients the message was accepted for.
    pub fn accepted(&self) -> impl Iterator<Item = &RecipientResult> {
        self.recipients.iter().filter(|r| r.is_accepted())
    }

    /// The recipients that were refused, with their replies.
    pub fn refused(&self) -> impl Iterator<Item = &RecipientResult> {
        self.recipients.iter().filter(|r| !r.is_accepted())
    }

    /// The queue id in the final reply, when the server names one the usual ways
    /// (`queued as ID` as Postfix says, or `id=ID` as Exim says).
    pub fn queue_id(&self) -> Option<&str> {
        let data = self.data.as_ref().filter(|d| d.is_completion())?;
        let line = data.lines().first()?;
        let start = if let Some(i) = line.find("queued as ") {
            i + "queued as ".len()
        } else {
            line.find("id=")? + "id=".len()
        };
        let id = line[start..].split([' ', ',', ';', ')']).next()?;
        (!id.is_empty()).then_some(id)
    }
}
