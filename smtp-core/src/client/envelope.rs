//! The envelope of a message: sender, recipients and their parameters.

use crate::address::{Address, AddressError, ForwardPath, ReversePath};
use crate::command::{MailParameters, RcptParameters};

/// A recipient with its RCPT parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The address.
    pub address: ForwardPath,
    /// NOTIFY, ORCPT and others.
    pub params: RcptParameters,
}

/// The envelope of one message: sender, recipients and their parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The sender (MAIL FROM), or the null path for notifications.
    pub from: ReversePath,
    /// MAIL parameters. SIZE and SMTPUTF8 are added by the session when they apply.
    pub params: MailParameters,
    /// The recipients, in order.
    pub recipients: Vec<Recipient>,
}

impl Envelope {
    /// An envelope from plain address strings; an empty `from` is the null path.
    ///
    /// ```
    /// use smtp_core::client::Envelope;
    /// assert!(Envelope::new("a@example.com", &["b@example.com"]).is_ok());
    /// assert!(Envelope::new("a@example.com\r\nRSET", &["b@example.com"]).is_err());
    /// ```
    pub fn new(from: &str, to: &[&str]) -> Result<Envelope, AddressError> {
        let from = if from.is_empty() {
            ReversePath::Null
        } else {
            ReversePath::Mailbox(Address::parse(from)?)
        };
        let recipients = to
            .iter()
            .map(|t| {
                Ok(Recipient {
                    address: ForwardPath::Mailbox(Address::parse(t)?),
                    params: RcptParameters::default(),
                })
            })
            .collect::<Result<Vec<_>, AddressError>>()?;
        Ok(Envelope {
            from,
            params: MailParameters::default(),
            recipients,
        })
    }

    pub(super) fn is_ascii(&self) -> bool {
        self.from.is_ascii() && self.recipients.iter().all(|r| r.address.is_ascii())
    }
}
