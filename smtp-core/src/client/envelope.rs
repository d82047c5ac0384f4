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
    /// An envelope from plain address strings (anything that is `AsRef<str>`: `&str`,
    /// `String`, arrays, slices, vectors, iterators); an empty `from` is the null path.
    /// An address that does not parse is named in the error, with its place.
    ///
    /// ```
    /// use smtp_core::client::{AddressRole, Envelope};
    /// assert!(Envelope::new("a@example.com", ["b@example.com"]).is_ok());
    /// let owned: Vec<String> = vec!["b@example.com".into(), "c@example.com".into()];
    /// assert_eq!(Envelope::new("a@example.com", &owned).unwrap().recipients.len(), 2);
    /// let e = Envelope::new("a@example.com", ["b@example.com", "not an address"]).unwrap_err();
    /// assert_eq!(e.address(), "not an address");
    /// assert_eq!(e.role(), AddressRole::Recipient(1));
    /// assert!(Envelope::new("a@example.com\r\nRSET", ["b@example.com"]).is_err());
    /// ```
    pub fn new<T: AsRef<str>>(
        from: impl AsRef<str>,
        to: impl IntoIterator<Item = T>,
    ) -> Result<Envelope, InvalidAddress> {
        let from = from.as_ref();
        let from = if from.is_empty() {
            ReversePath::Null
        } else {
            ReversePath::Mailbox(
                Address::parse(from)
                    .map_err(|e| InvalidAddress::new(AddressRole::Sender, from, e))?,
            )
        };
        let recipients = to
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let t = t.as_ref();
                Ok(Recipient {
                    address: ForwardPath::Mailbox(
                        Address::parse(t)
                            .map_err(|e| InvalidAddress::new(AddressRole::Recipient(i), t, e))?,
                    ),
                    params: RcptParameters::default(),
                })
            })
            .collect::<Result<Vec<_>, InvalidAddress>>()?;
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

/// Which address of an envelope an [`InvalidAddress`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressRole {
    /// The sender (MAIL FROM).
    Sender,
    /// The recipient at this index (from 0), in the order given.
    Recipient(usize),
}

/// An address of an envelope that does not parse: which one, its text, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidAddress {
    role: AddressRole,
    address: String,
    reason: AddressError,
}

impl InvalidAddress {
    fn new(role: AddressRole, address: &str, reason: AddressError) -> InvalidAddress {
        InvalidAddress {
            role,
            address: address.to_owned(),
            reason,
        }
    }

    /// The address as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sender or which recipient.
    pub fn role(&self) -> AddressRole {
        self.role
    }

    /// Why it was refused.
    pub fn reason(&self) -> AddressError {
        self.reason
    }
}

impl std::fmt::Display for InvalidAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Debug-quoted, so that a CR or LF in the address cannot forge a log line.
        match self.role {
            AddressRole::Sender => write!(f, "sender {:?}: {}", self.address, self.reason),
            AddressRole::Recipient(i) => {
                write!(f, "recipient {} {:?}: {}", i + 1, self.address, self.reason)
            }
        }
    }
}

impl std::error::Error for InvalidAddress {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.reason)
    }
}

impl From<InvalidAddress> for crate::client::ClientError {
    fn from(e: InvalidAddress) -> Self {
        crate::client::ClientError::InvalidArgument(e.to_string())
    }
}
