//! Delivery into a Maildir: [`MaildirHandler`] writes every accepted message to its own
//! file, the way qmail's Maildir specification asks, so that a reader never sees a message
//! that is not complete and on disk.
//!
//! Each message is written to `tmp/` under a name no other delivery can pick, flushed and
//! synced, then renamed into `new/`, and `new/` itself is synced; only then does the client
//! hear 250. A message that fails, is aborted, or whose connection ends early is deleted
//! from `tmp/`, so `new/` only ever holds complete messages and `tmp/` holds nothing of
//! this handler's once a transaction is over.
//!
//! The file starts with two trace headers, then the content exactly as received. Lines end
//! in CRLF and continuation lines start with one tab (shown here as spaces):
//!
//! ```text
//! Return-Path: <sender@example.org>
//! Received: from client.example.org (192.0.2.7)
//!         by mx.example.com (smtpx) with ESMTPS id 1795674954.M123456P4242Q7
//!         for <user@example.com>; Thu, 26 Nov 2026 06:35:54 +0000
//! ```
//!
//! `for` appears only when the message has exactly one recipient; otherwise the date
//! follows the id on the `by` line. The client is told `250 2.0.0 Ok: queued as <id>`,
//! where the id is the file name without its host part.
//!
//! # Crashes and `tmp/`
//!
//! A process killed in the middle of a message (SIGKILL, a power cut) leaves that
//! message's file in `tmp/`: nothing acknowledged is ever lost, because 250 is only sent
//! once the file is in `new/`, but the leftovers would pile up. They are removed when a
//! handler is created, that is at server start-up, by one of two rules ([`TmpCleanup`]):
//!
//! - [`MaildirHandler::new`] removes files last modified more than 36 hours ago
//!   ([`STALE_TMP_AGE`]), the Maildir convention. It is safe when several delivery
//!   processes (another smtpx server, an MDA) share the Maildir: a delivery that is alive
//!   keeps writing its file, and none lasts 36 hours. Leftovers of a recent crash stay
//!   until a start-up that comes after they have aged.
//! - [`MaildirHandler::with_tmp_cleanup`] with [`TmpCleanup::All`] removes every file
//!   in `tmp/`. Use it only when this handler is the Maildir's sole writer: another
//!   process's message in progress would be deleted under it (its delivery then fails
//!   and its client retries, so nothing acknowledged is lost, but the work is wasted).
//!
//! There is no periodic sweep: this handler deletes its own file whenever a message is
//! not delivered (refused, aborted, connection lost, session dropped), so leftovers only
//! come from a process that died, and every such death is followed by a start-up.
//!
//! ```
//! use std::time::Duration;
//! use smtp_core::handler::{ConnectionInfo, Dispatch, Handler};
//! use smtp_core::maildir::MaildirHandler;
//! use smtp_core::server::{ServerConfig, ServerSession};
//!
//! // A private Maildir for this example, removed at the end.
//! let root = std::env::temp_dir().join(format!("smtpx-maildir-doc-{}", std::process::id()));
//! let handler = MaildirHandler::new(root.clone(), "mx.example")?;
//!
//! let info = ConnectionInfo {
//!     id: 1,
//!     peer: Some("192.0.2.7:40000".parse().unwrap()),
//!     local: None,
//!     hostname: "mx.example".into(),
//!     tls: false,
//!     proxy: None,
//!     tls_state: Default::default(),
//! };
//! let mut session = ServerSession::new(ServerConfig::new("mx.example"), Duration::ZERO);
//! let mut dispatch = Dispatch::new(handler.connect(&info).expect("accepted"), info.tls);
//! dispatch.run(&mut session, None); // the greeting
//! // A client waits for the reply that ends each pipelined group.
//! for group in [
//!     &b"EHLO client.example\r\n"[..],
//!     b"MAIL FROM:<a@client.example>\r\nRCPT TO:<b@mx.example>\r\nDATA\r\n",
//!     b"Subject: hi\r\n\r\nHello.\r\n.\r\nQUIT\r\n",
//! ] {
//!     session.receive(group, Duration::ZERO);
//!     dispatch.run(&mut session, None);
//! }
//!
//! let out = String::from_utf8_lossy(session.output()).into_owned();
//! assert!(out.contains("250 2.0.0 Ok: queued as "), "{out}");
//! assert_eq!(handler.list_new()?.len(), 1);
//! std::fs::remove_dir_all(&root)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::handler::{ConnectionInfo, Handler, Hook, SessionHandler, Transaction};
use crate::reply::{EnhancedCode, Reply, ReplyCode};
use crate::server::{AbortReason, Decision, HelloVerb};

/// Write buffer per message: large enough that a typical message costs a handful of
/// `write` calls, small enough that many concurrent sessions stay cheap.
const WRITE_BUFFER: usize = 64 * 1024;

/// Name collisions are only possible when another process with our pid (a previous
/// boot, another container sharing the directory) delivered in the same microsecond;
/// a few fresh attempts settle it, and an unbounded loop could spin on a broken directory.
const NAME_ATTEMPTS: u32 = 8;

/// How old a file in `tmp/` must be before [`MaildirHandler::new`] removes it: 36 hours,
/// the age the Maildir specification gives. Nothing delivering mail keeps a file open
/// unmodified that long, so a file this old belongs to a process that died.
pub const STALE_TMP_AGE: Duration = Duration::from_secs(36 * 60 * 60);

/// Which leftovers in `tmp/` a new [`MaildirHandler`] removes (see the [module
/// docs](self#crashes-and-tmp)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TmpCleanup {
    /// Files last modified more than [`STALE_TMP_AGE`] ago: the Maildir convention, safe
    /// when other processes deliver into the same Maildir. What [`MaildirHandler::new`]
    /// does.
    #[default]
    Stale,
    /// Every file, however young: for a handler that is the Maildir's only writer, so
    /// that a crash's leftovers are gone at the very next start-up. Another process's
    /// message in progress would be deleted under it.
    All,
}

/// Delivers every accepted message into one Maildir (`root/{tmp,new,cur}`).
///
/// All connections share the handler; each gets a [`MaildirSession`]. Recipients are not
/// looked at: every message goes to the same Maildir, so put recipient checks in front
/// (or wrap the session) when that matters.
///
/// Under LMTP one file is written per message, not per recipient, and every recipient
/// gets the same reply: they all share that single delivery.
#[derive(Debug, Clone)]
pub struct MaildirHandler {
    shared: Arc<Shared>,
}

/// What every session of a handler needs.
#[derive(Debug)]
struct Shared {
    root: PathBuf,
    /// The host name, for the Received header of connections that lack one.
    hostname: String,
    /// The host name with `/` and `:` escaped, ready for file names.
    name_host: String,
    /// Makes names unique within this process: the Maildir convention's `Q` part.
    counter: AtomicU64,
}

impl MaildirHandler {
    /// A handler delivering into `root`, creating `root/tmp`, `root/new` and `root/cur`
    /// (mode 0700 on Unix: mail is private) when they do not exist. `hostname` goes into
    /// the unique file names, as the Maildir convention asks.
    ///
    /// Files in `tmp/` last modified more than [`STALE_TMP_AGE`] (36 hours) ago, the
    /// leftovers of crashed deliveries, are removed ([`TmpCleanup::Stale`]); younger ones
    /// are kept, as they may be another process's messages in progress. A handler that is
    /// the Maildir's only writer can remove them all with
    /// [`with_tmp_cleanup`](Self::with_tmp_cleanup).
    pub fn new(
        root: impl Into<PathBuf>,
        hostname: impl Into<String>,
    ) -> io::Result<MaildirHandler> {
        MaildirHandler::with_tmp_cleanup(root, hostname, TmpCleanup::Stale)
    }

    /// Like [`new`](Self::new), with the rule for leftovers in `tmp/` chosen by `cleanup`.
    /// [`TmpCleanup::All`] removes every file in `tmp/`: right when this handler is the
    /// Maildir's only writer (a server restarted after a crash gets a clean `tmp/` at
    /// once), wrong when another process delivers there too (its message in progress
    /// would be deleted under it, and that delivery would fail).
    ///
    /// The cleanup happens here, before any session exists, so it never touches this
    /// handler's own messages. Directories in `tmp/` are left alone. A file that cannot
    /// be removed is logged and skipped: cleaning up is housekeeping and does not stop
    /// the handler from delivering.
    pub fn with_tmp_cleanup(
        root: impl Into<PathBuf>,
        hostname: impl Into<String>,
        cleanup: TmpCleanup,
    ) -> io::Result<MaildirHandler> {
        let root = root.into();
        let hostname = hostname.into();
        for sub in ["tmp", "new", "cur"] {
            create_private_dir(&root.join(sub))?;
        }
        let max_age = match cleanup {
            TmpCleanup::Stale => Some(STALE_TMP_AGE),
            TmpCleanup::All => None,
        };
        clean_tmp(&root.join("tmp"), max_age, SystemTime::now());
        Ok(MaildirHandler {
            shared: Arc::new(Shared {
                root,
                name_host: escape_hostname(&hostname),
                hostname,
                counter: AtomicU64::new(0),
            }),
        })
    }

    /// The Maildir's directory.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// The files delivered to `new/` and not yet picked up by a reader, sorted by name
    /// (which sorts them by delivery time).
    pub fn list_new(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(self.shared.root.join("new"))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }
}

/// Removes the files in `tmp` last modified more than `max_age` before `now` (every file
/// when `max_age` is `None`); returns how many went. Errors are logged, never returned:
/// see [`MaildirHandler::with_tmp_cleanup`].
fn clean_tmp(tmp: &Path, max_age: Option<Duration>, now: SystemTime) -> usize {
    let entries = match fs::read_dir(tmp) {
        Ok(entries) => entries,
        Err(e) => {
            log::warn!("maildir: cannot list {} for cleanup: {e}", tmp.display());
            return 0;
        }
    };
    let mut removed = 0;
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                log::warn!("maildir: cannot list {} for cleanup: {e}", tmp.display());
                break;
            }
        };
        let path = entry.path();
        // symlink_metadata: a link is judged (and removed) itself, never its target.
        let metadata = match fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            // Gone already: another process cleaned up or delivered it.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                log::warn!("maildir: cannot inspect {}: {e}", path.display());
                continue;
            }
        };
        if metadata.is_dir() {
            continue;
        }
        if let Some(max_age) = max_age {
            // A time in the future (a clock set back) or one the system does not keep
            // counts as young: keeping a stray file is harmless, deleting a live one is not.
            let stale = metadata
                .modified()
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > max_age);
            if !stale {
                continue;
            }
        }
        match fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => log::warn!("maildir: cannot remove {}: {e}", path.display()),
        }
    }
    if removed > 0 {
        log::info!(
            "maildir: removed {removed} leftover file(s) of interrupted deliveries from {}",
            tmp.display()
        );
    }
    removed
}

fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// `/` would make the name a path and `:` starts the Maildir info suffix, so both are
/// written as octal escapes (the convention Courier and Dovecot share).
fn escape_hostname(hostname: &str) -> String {
    hostname.replace('/', "\\057").replace(':', "\\072")
}

impl Handler for MaildirHandler {
    type Session = MaildirSession;

    fn connect(&self, info: &ConnectionInfo) -> Result<MaildirSession, Reply> {
        Ok(MaildirSession {
            shared: Arc::clone(&self.shared),
            id: info.id,
            // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d; the trace
            // header should name the address the client actually has.
            peer: info.peer.map(|a| a.ip().to_canonical()),
            hostname: if info.hostname.is_empty() {
                self.shared.hostname.clone()
            } else {
                info.hostname.clone()
            },
            tls: info.tls,
            message: None,
        })
    }
}

/// The per-connection part of [`MaildirHandler`]: holds the message being received.
///
/// Dropping it deletes a message in progress, like [`SessionHandler::close`].
#[derive(Debug)]
pub struct MaildirSession {
    shared: Arc<Shared>,
    id: u64,
    peer: Option<IpAddr>,
    hostname: String,
    tls: bool,
    message: Option<Message>,
}

/// A message being written in `tmp/`.
#[derive(Debug)]
struct Message {
    writer: BufWriter<File>,
    /// The file name, the same in `tmp/` and `new/`.
    name: String,
    /// The name without the host part: the queue id the client is told.
    queue_id: String,
    /// Octets written, trace headers included, for the log.
    size: u64,
    /// A failed write: the message is lost and this is its final reply.
    error: Option<Reply>,
}

impl MaildirSession {
    fn tmp_path(&self, name: &str) -> PathBuf {
        self.shared.root.join("tmp").join(name)
    }

    fn new_path(&self, name: &str) -> PathBuf {
        self.shared.root.join("new").join(name)
    }

    /// Creates the `tmp/` file under a fresh unique name. Returns it with its name, queue
    /// id and the time the name was made of (the Received date uses the same instant).
    fn create_unique(&self) -> io::Result<(File, String, String, u64)> {
        let mut attempt = 0;
        loop {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let q = self.shared.counter.fetch_add(1, Ordering::Relaxed);
            let queue_id = format!(
                "{}.M{}P{}Q{}",
                now.as_secs(),
                now.subsec_micros(),
                std::process::id(),
                q
            );
            let name = format!("{queue_id}.{}", self.shared.name_host);
            let mut options = OpenOptions::new();
            // create_new: never overwrite or append to someone else's file.
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(self.tmp_path(&name)) {
                Ok(file) => return Ok((file, name, queue_id, now.as_secs())),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempt + 1 < NAME_ATTEMPTS => {
                    attempt += 1
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts a message: the file and its trace headers.
    fn begin(&mut self, t: &Transaction) -> io::Result<Message> {
        let (file, name, queue_id, secs) = self.create_unique()?;
        let mut message = Message {
            writer: BufWriter::with_capacity(WRITE_BUFFER, file),
            name,
            queue_id,
            size: 0,
            error: None,
        };
        let headers = trace_headers(
            t,
            self.peer,
            &self.hostname,
            self.tls,
            &message.queue_id,
            secs,
        );
        match message.writer.write_all(headers.as_bytes()) {
            Ok(()) => {
                message.size = headers.len() as u64;
                Ok(message)
            }
            Err(e) => {
                self.discard(message);
                Err(e)
            }
        }
    }

    /// Makes the message durable in `new/`; returns its queue id.
    fn commit(&mut self, message: Message) -> Result<String, Reply> {
        if let Some(reply) = message.error.clone() {
            self.discard(message);
            return Err(reply);
        }
        let Message {
            writer,
            name,
            queue_id,
            size,
            ..
        } = message;
        let tmp = self.tmp_path(&name);
        let new = self.new_path(&name);
        let synced = writer
            .into_inner()
            .map_err(|e| {
                // Drop the writer without its buffer: dropping it whole would try the
                // failed write again, on a file about to be deleted.
                let (error, writer) = e.into_parts();
                drop(writer.into_parts());
                error
            })
            .and_then(|file| file.sync_all());
        if let Err(e) = synced.and_then(|()| fs::rename(&tmp, &new)) {
            self.fail("writing", &e);
            remove_quietly(self.id, &tmp);
            return Err(storage_error(&e));
        }
        if let Err(e) = sync_dir(&self.shared.root.join("new")) {
            // The rename may not survive a crash, yet a reader may already see the file.
            // The client will be told to retry, so take the file back rather than risk
            // the message being delivered twice.
            self.fail("syncing new/", &e);
            remove_quietly(self.id, &new);
            return Err(storage_error(&e));
        }
        log::info!(
            "conn={} maildir: queued as {} ({} octets)",
            self.id,
            queue_id,
            size
        );
        Ok(queue_id)
    }

    /// Drops a message that will not be delivered.
    fn discard(&self, message: Message) {
        let path = self.tmp_path(&message.name);
        // Close before unlinking: a buffered tail must not be written after the unlink
        // fails and the file lingers.
        let (file, _) = message.writer.into_parts();
        drop(file);
        remove_quietly(self.id, &path);
    }

    fn discard_in_progress(&mut self) {
        if let Some(message) = self.message.take() {
            self.discard(message);
        }
    }

    fn fail(&self, what: &str, e: &io::Error) {
        log::warn!("conn={} maildir: {what} failed: {e}", self.id);
    }
}

fn remove_quietly(id: u64, path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => log::error!("conn={id} maildir: cannot remove an undelivered message: {e}"),
    }
}

/// Syncs a directory so that a rename into it survives a crash.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Other systems cannot open a directory as a file; their renames are as durable as
/// their file system makes them.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// The reply for a failed delivery: a full disk is worth telling apart (452, RFC 3463's
/// 4.3.1), everything else is a local error (451 4.3.0). Both are transient: the client
/// keeps the message and retries.
fn storage_error(e: &io::Error) -> Reply {
    // ENOSPC is 28 on Linux and the BSDs; the raw check covers errors built before the
    // kind existed or wrapped without it.
    if e.kind() == ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        Reply::new(
            ReplyCode::INSUFFICIENT_STORAGE,
            Some(EnhancedCode::SYSTEM_FULL),
            "Error: insufficient system storage",
        )
    } else {
        Reply::new(
            ReplyCode::LOCAL_ERROR,
            Some(EnhancedCode::TEMP_LOCAL_ERROR),
            "Error: local error in processing",
        )
    }
}

/// The `with` protocol name of the Received header (RFC 3848).
fn protocol(t: &Transaction, tls: bool) -> &'static str {
    match t.hello.as_ref().map(|(verb, _)| *verb) {
        Some(HelloVerb::Lhlo) => "LMTP",
        Some(HelloVerb::Helo) => "SMTP",
        Some(HelloVerb::Ehlo) | None => match (tls, t.authenticated.is_some()) {
            (false, false) => "ESMTP",
            (true, false) => "ESMTPS",
            (false, true) => "ESMTPA",
            (true, true) => "ESMTPSA",
        },
    }
}

/// Client-supplied text put into a header. The engine already refuses CR and LF in
/// commands; this keeps a header from ever being split even if that changes.
fn header_safe(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(
            text.chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// `Return-Path` and `Received`, each ending in CRLF.
fn trace_headers(
    t: &Transaction,
    peer: Option<IpAddr>,
    hostname: &str,
    tls: bool,
    queue_id: &str,
    secs: u64,
) -> String {
    let sender = t
        .from
        .as_ref()
        .map_or(Cow::Borrowed(""), |f| header_safe(f.as_str()));
    let helo = t
        .hello
        .as_ref()
        .map_or(Cow::Borrowed("unknown"), |(_, name)| header_safe(name));
    let peer = peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let with = protocol(t, tls || t.tls);
    let date = rfc5322_date(secs);
    // RFC 5321 §4.4: FOR names one recipient; listing several would disclose the others
    // to every recipient.
    let by_end = match t.recipients.as_slice() {
        [only] => format!("\r\n\tfor <{}>; {date}", header_safe(only.as_str())),
        _ => format!("; {date}"),
    };
    format!(
        "Return-Path: <{sender}>\r\nReceived: from {helo} ({peer})\r\n\tby {hostname} (smtpx) with {with} id {queue_id}{by_end}\r\n"
    )
}

/// A time as an RFC 5322 date in UTC: `Thu, 26 Nov 2026 06:35:54 +0000`.
fn rfc5322_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        // 1970-01-01 was a Thursday.
        DAYS[(days % 7) as usize],
        MONTHS[month as usize - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic Gregorian
/// calendar: Howard Hinnant's `civil_from_days`, for non-negative day counts. Eras are
/// 400-year cycles counted from 0000-03-01, so the leap day is the last day of its year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

impl SessionHandler for MaildirSession {
    fn tls_started(&mut self) {
        self.tls = true;
    }

    fn may_block(&self, hook: &Hook<'_>) -> bool {
        // Only the hooks that touch files: the message's, and those that remove a
        // message in progress.
        match hook {
            Hook::DataStart { .. } | Hook::DataChunk { .. } | Hook::DataEnd { .. } => true,
            Hook::DataAborted { .. } | Hook::Reset | Hook::Close => self.message.is_some(),
            _ => false,
        }
    }

    fn data_start(&mut self, t: &Transaction) -> Decision {
        // A message left over would be a hook sequence the dispatcher never produces;
        // it is not going to be delivered either way.
        self.discard_in_progress();
        match self.begin(t) {
            Ok(message) => {
                self.message = Some(message);
                Decision::Accept
            }
            Err(e) => {
                self.fail("creating the message file", &e);
                Decision::Reply(storage_error(&e))
            }
        }
    }

    fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        let Some(message) = self.message.as_mut() else {
            return Ok(());
        };
        if let Some(reply) = &message.error {
            return Err(reply.clone());
        }
        match message.writer.write_all(chunk) {
            Ok(()) => {
                message.size += chunk.len() as u64;
                Ok(())
            }
            Err(e) => {
                let reply = storage_error(&e);
                message.error = Some(reply.clone());
                self.fail("writing", &e);
                Err(reply)
            }
        }
    }

    fn data_end(&mut self, t: &Transaction) -> Decision {
        let result = match self.message.take() {
            Some(message) => self.commit(message),
            None => {
                log::warn!(
                    "conn={} maildir: end of a message that was never started",
                    self.id
                );
                Err(Reply::new(
                    ReplyCode::LOCAL_ERROR,
                    Some(EnhancedCode::TEMP_LOCAL_ERROR),
                    "Error: local error in processing",
                ))
            }
        };
        let reply = match result {
            Ok(queue_id) => Reply::new(
                ReplyCode::OK,
                Some(EnhancedCode::OK),
                format!("Ok: queued as {queue_id}"),
            ),
            Err(reply) => reply,
        };
        if matches!(t.hello, Some((HelloVerb::Lhlo, _))) {
            // One delivery serves every recipient, so they all share its outcome.
            Decision::PerRecipient(vec![reply; t.recipients.len().max(1)])
        } else {
            Decision::Reply(reply)
        }
    }

    fn data_aborted(&mut self, _reason: AbortReason) {
        self.discard_in_progress();
    }

    fn reset(&mut self) {
        self.discard_in_progress();
    }

    fn close(&mut self) {
        self.discard_in_progress();
    }
}

impl Drop for MaildirSession {
    fn drop(&mut self) {
        // A driver that loses the connection without calling close must not leave a
        // half-written file behind.
        self.discard_in_progress();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::Dispatch;
    use crate::server::{ServerConfig, ServerSession};
    use std::time::Duration;

    /// A Maildir root unique to one test, removed when the test ends (even by panic).
    struct TempRoot(PathBuf);

    impl TempRoot {
        fn new(tag: &str) -> TempRoot {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            TempRoot(std::env::temp_dir().join(format!(
                "smtpx-maildir-{tag}-{}-{nanos}",
                std::process::id()
            )))
        }
    }

    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    struct Client {
        session: ServerSession,
        dispatch: Dispatch<MaildirSession>,
    }

    impl Client {
        fn connect(handler: &MaildirHandler, lmtp: bool) -> Client {
            let info = ConnectionInfo {
                id: 7,
                peer: Some("[::ffff:192.0.2.1]:4321".parse().unwrap()),
                local: None,
                hostname: "mx.test".into(),
                tls: false,
                proxy: None,
                tls_state: Default::default(),
            };
            let mut config = ServerConfig::new("mx.test");
            config.lmtp = lmtp;
            let mut client = Client {
                session: ServerSession::new(config, Duration::ZERO),
                dispatch: Dispatch::new(handler.connect(&info).unwrap(), info.tls),
            };
            client.dispatch.run(&mut client.session, None);
            let greeting = String::from_utf8(client.session.take_output()).unwrap();
            assert!(greeting.starts_with("220 "), "{greeting}");
            client
        }

        /// Sends `bytes` a line at a time, as a client that waits for each reply (the
        /// session refuses careless pipelining).
        fn send(&mut self, bytes: &[u8]) -> String {
            for line in bytes.split_inclusive(|&b| b == b'\n') {
                assert_eq!(self.session.receive(line, Duration::ZERO), line.len());
                self.dispatch.run(&mut self.session, None);
            }
            String::from_utf8(self.session.take_output()).unwrap()
        }
    }

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    /// The queue id in a `250 2.0.0 Ok: queued as <id>` line.
    fn queue_id(line: &str) -> String {
        line.strip_prefix("250 2.0.0 Ok: queued as ")
            .unwrap_or_else(|| panic!("{line}"))
            .trim_end()
            .to_owned()
    }

    /// The delivery time encoded in a queue id: its seconds part.
    fn date_of(queue_id: &str) -> String {
        rfc5322_date(queue_id.split('.').next().unwrap().parse().unwrap())
    }

    const MESSAGE: &[u8] = b"DATA\r\nSubject: hi\r\n\r\n..starts with a dot\r\nbody\r\n.\r\n";
    const CONTENT: &str = "Subject: hi\r\n\r\n.starts with a dot\r\nbody\r\n";

    #[test]
    fn delivers_one_message() {
        let root = TempRoot::new("one");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        let mut c = Client::connect(&handler, false);
        c.send(b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
        let out = c.send(MESSAGE);
        let last = out.lines().last().unwrap();
        let id = queue_id(last);

        let files = handler.list_new().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0].file_name().unwrap().to_str().unwrap(),
            format!("{id}.host.test")
        );
        assert!(files_in(&root.0.join("tmp")).is_empty());
        assert!(files_in(&root.0.join("cur")).is_empty());
        let expected = format!(
            "Return-Path: <a@b.test>\r\n\
             Received: from client.test (192.0.2.1)\r\n\
             \tby mx.test (smtpx) with ESMTP id {id}\r\n\
             \tfor <x@y.test>; {}\r\n{CONTENT}",
            date_of(&id)
        );
        assert_eq!(fs::read_to_string(&files[0]).unwrap(), expected);
        assert!(c.send(b"QUIT\r\n").starts_with("221 "));
    }

    #[test]
    #[cfg(unix)]
    fn files_and_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = TempRoot::new("modes");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        for sub in ["tmp", "new", "cur"] {
            let mode = fs::metadata(root.0.join(sub)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{sub}");
        }
        let mut c = Client::connect(&handler, false);
        c.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
        c.send(MESSAGE);
        let file = &handler.list_new().unwrap()[0];
        assert_eq!(
            fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn null_sender_and_several_recipients() {
        let root = TempRoot::new("null");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        let mut c = Client::connect(&handler, false);
        c.send(b"HELO client.test\r\nMAIL FROM:<>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\n");
        let id = queue_id(c.send(MESSAGE).lines().last().unwrap());
        let files = handler.list_new().unwrap();
        assert_eq!(files.len(), 1);
        let expected = format!(
            "Return-Path: <>\r\n\
             Received: from client.test (192.0.2.1)\r\n\
             \tby mx.test (smtpx) with SMTP id {id}; {}\r\n{CONTENT}",
            date_of(&id)
        );
        assert_eq!(fs::read_to_string(&files[0]).unwrap(), expected);
    }

    #[test]
    fn disconnect_mid_data_leaves_nothing() {
        let root = TempRoot::new("eof");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        let mut c = Client::connect(&handler, false);
        let out = c.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nSubject: half\r\n\r\nsome");
        assert!(
            out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"),
            "{out}"
        );
        // The message is really being written, so the cleanup below is not vacuous.
        assert_eq!(files_in(&root.0.join("tmp")).len(), 1);
        c.session.receive_eof();
        c.dispatch.run(&mut c.session, None);
        assert!(c.session.is_closed());
        assert!(files_in(&root.0.join("tmp")).is_empty());
        assert!(files_in(&root.0.join("new")).is_empty());
    }

    #[test]
    fn only_the_hooks_that_touch_files_may_block() {
        let root = TempRoot::new("block");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        let mut c = Client::connect(&handler, false);
        let t = Transaction::default();
        let session = c.dispatch.handler().unwrap();
        assert!(!session.may_block(&Hook::Reset));
        assert!(!session.may_block(&Hook::Close));
        assert!(!session.may_block(&Hook::Verify { argument: "x" }));
        assert!(session.may_block(&Hook::DataStart { transaction: &t }));
        assert!(session.may_block(&Hook::DataChunk { chunk: b"x" }));
        assert!(session.may_block(&Hook::DataEnd { transaction: &t }));
        // A message in progress has a file that RSET or the end of the connection removes.
        c.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
        let session = c.dispatch.handler().unwrap();
        assert!(session.may_block(&Hook::Reset));
        assert!(session.may_block(&Hook::Close));
    }

    #[test]
    fn dropping_the_session_mid_data_leaves_nothing() {
        let root = TempRoot::new("drop");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        let mut c = Client::connect(&handler, false);
        c.send(
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nSubject: half\r\n",
        );
        assert_eq!(files_in(&root.0.join("tmp")).len(), 1);
        drop(c);
        assert!(files_in(&root.0.join("tmp")).is_empty());
        assert!(files_in(&root.0.join("new")).is_empty());
    }

    #[test]
    fn rset_between_bdat_chunks_leaves_nothing() {
        let root = TempRoot::new("bdat");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        let mut c = Client::connect(&handler, false);
        c.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nBDAT 6\r\nhello!");
        assert_eq!(files_in(&root.0.join("tmp")).len(), 1);
        let out = c.send(b"RSET\r\n");
        assert!(out.starts_with("250 "), "{out}");
        assert!(files_in(&root.0.join("tmp")).is_empty());
        assert!(files_in(&root.0.join("new")).is_empty());
    }

    #[test]
    fn tmp_unusable_refuses_data_then_recovers() {
        let root = TempRoot::new("notmp");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        let tmp = root.0.join("tmp");
        // Tests may run as root, where permission bits stop nothing: a regular file named
        // tmp makes every create under it fail for everyone.
        fs::remove_dir(&tmp).unwrap();
        fs::write(&tmp, b"").unwrap();
        let mut c = Client::connect(&handler, false);
        c.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
        assert_eq!(
            c.send(b"DATA\r\n"),
            "451 4.3.0 Error: local error in processing\r\n"
        );
        assert!(files_in(&root.0.join("new")).is_empty());

        fs::remove_file(&tmp).unwrap();
        fs::create_dir(&tmp).unwrap();
        c.send(b"RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
        let id = queue_id(c.send(MESSAGE).lines().last().unwrap());
        let files = handler.list_new().unwrap();
        assert_eq!(files.len(), 1);
        assert!(
            files[0]
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{id}."))
        );
        assert!(files_in(&tmp).is_empty());
    }

    #[test]
    fn new_missing_at_end_fails_cleanly_then_recovers() {
        let root = TempRoot::new("nonew");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        let new = root.0.join("new");
        let mut c = Client::connect(&handler, false);
        c.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n");
        assert_eq!(files_in(&root.0.join("tmp")).len(), 1);
        fs::remove_dir(&new).unwrap();
        assert_eq!(
            c.send(b".\r\n"),
            "451 4.3.0 Error: local error in processing\r\n"
        );
        assert!(files_in(&root.0.join("tmp")).is_empty());
        assert!(!new.exists());

        fs::create_dir(&new).unwrap();
        c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
        let id = queue_id(c.send(MESSAGE).lines().last().unwrap());
        let files = handler.list_new().unwrap();
        assert_eq!(files.len(), 1);
        assert!(
            fs::read_to_string(&files[0])
                .unwrap()
                .contains(&format!(" id {id}\r\n"))
        );
        assert!(files_in(&root.0.join("tmp")).is_empty());
    }

    #[test]
    fn two_messages_in_one_session() {
        let root = TempRoot::new("two");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        let mut c = Client::connect(&handler, false);
        c.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
        let first = queue_id(c.send(MESSAGE).lines().last().unwrap());
        c.send(b"MAIL FROM:<b@b.test>\r\nRCPT TO:<x@y.test>\r\n");
        let out = c.send(b"DATA\r\nSubject: second\r\n\r\n2\r\n.\r\n");
        let second = queue_id(out.lines().last().unwrap());
        assert_ne!(first, second);

        let files = handler.list_new().unwrap();
        assert_eq!(files.len(), 2);
        let read = |id: &str| {
            fs::read_to_string(root.0.join("new").join(format!("{id}.host.test"))).unwrap()
        };
        assert!(read(&first).starts_with("Return-Path: <a@b.test>\r\n"));
        assert!(read(&first).ends_with(&format!("; {}\r\n{CONTENT}", date_of(&first))));
        assert!(read(&second).starts_with("Return-Path: <b@b.test>\r\n"));
        assert!(read(&second).ends_with("\r\nSubject: second\r\n\r\n2\r\n"));
        assert!(files_in(&root.0.join("tmp")).is_empty());
    }

    #[test]
    fn lmtp_replies_once_per_recipient() {
        let root = TempRoot::new("lmtp");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        let mut c = Client::connect(&handler, true);
        c.send(b"LHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\nRCPT TO:<w@y.test>\r\n");
        let out = c.send(MESSAGE);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].starts_with("354 "), "{out}");
        let id = queue_id(lines[1]);
        assert_eq!(lines[2..], [lines[1], lines[1]]);

        let files = handler.list_new().unwrap();
        assert_eq!(files.len(), 1);
        let text = fs::read_to_string(&files[0]).unwrap();
        assert!(
            text.contains(&format!(
                "\tby mx.test (smtpx) with LMTP id {id}; {}\r\n",
                date_of(&id)
            )),
            "{text}"
        );
    }

    #[test]
    fn lmtp_failure_is_reported_for_every_recipient() {
        let root = TempRoot::new("lmtpfail");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        let mut c = Client::connect(&handler, true);
        c.send(b"LHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\nDATA\r\nhi\r\n");
        fs::remove_dir(root.0.join("new")).unwrap();
        let out = c.send(b".\r\n");
        assert_eq!(
            out,
            "451 4.3.0 Error: local error in processing\r\n".repeat(2)
        );
        assert!(files_in(&root.0.join("tmp")).is_empty());
    }

    /// Creates `path` holding `content`, last modified `age` ago.
    fn file_aged(path: &Path, content: &[u8], age: Duration) {
        fs::write(path, content).unwrap();
        let when = SystemTime::now() - age;
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    const HOUR: Duration = Duration::from_secs(3600);

    /// A Maildir with leftovers of every age in `tmp/`, a stale-looking subdirectory and a
    /// message in `new/` as old as the oldest leftover.
    fn maildir_with_leftovers(tag: &str) -> TempRoot {
        let root = TempRoot::new(tag);
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(root.0.join(sub)).unwrap();
        }
        let tmp = root.0.join("tmp");
        file_aged(&tmp.join("ancient"), b"partial", 400 * HOUR);
        file_aged(&tmp.join("stale"), b"partial", 37 * HOUR);
        file_aged(&tmp.join("young"), b"partial", 35 * HOUR);
        file_aged(&tmp.join("fresh"), b"partial", Duration::ZERO);
        let dir = tmp.join("a-directory");
        fs::create_dir(&dir).unwrap();
        file_aged(&dir.join("inside"), b"x", 400 * HOUR);
        File::open(&dir)
            .unwrap()
            .set_modified(SystemTime::now() - 400 * HOUR)
            .unwrap();
        file_aged(&root.0.join("new").join("delivered"), b"whole", 400 * HOUR);
        root
    }

    fn names_in(dir: &Path) -> Vec<String> {
        files_in(dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn new_removes_only_tmp_files_older_than_36_hours() {
        let root = maildir_with_leftovers("stale");
        let handler = MaildirHandler::new(root.0.clone(), "host.test").unwrap();
        assert_eq!(
            names_in(&root.0.join("tmp")),
            ["a-directory", "fresh", "young"]
        );
        assert!(root.0.join("tmp/a-directory/inside").exists());
        assert_eq!(names_in(&root.0.join("new")), ["delivered"]);
        assert_eq!(handler.list_new().unwrap().len(), 1);
    }

    #[test]
    fn tmp_cleanup_all_removes_every_leftover() {
        let root = maildir_with_leftovers("all");
        let handler =
            MaildirHandler::with_tmp_cleanup(root.0.clone(), "host.test", TmpCleanup::All).unwrap();
        // Directories are not leftovers of this handler: they stay.
        assert_eq!(names_in(&root.0.join("tmp")), ["a-directory"]);
        assert!(root.0.join("tmp/a-directory/inside").exists());
        assert_eq!(names_in(&root.0.join("new")), ["delivered"]);

        // The handler works after the cleanup, and its own message is not touched.
        let mut c = Client::connect(&handler, false);
        c.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n");
        queue_id(c.send(MESSAGE).lines().last().unwrap());
        assert_eq!(handler.list_new().unwrap().len(), 2);
    }

    #[test]
    fn stale_is_the_default_rule() {
        assert_eq!(TmpCleanup::default(), TmpCleanup::Stale);
        assert_eq!(STALE_TMP_AGE, 36 * HOUR);
    }

    #[test]
    fn a_modification_time_in_the_future_counts_as_young() {
        let root = TempRoot::new("future");
        fs::create_dir_all(&root.0).unwrap();
        let path = root.0.join("from-the-future");
        fs::write(&path, b"x").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::now() + 100 * HOUR)
            .unwrap();
        assert_eq!(
            clean_tmp(&root.0, Some(STALE_TMP_AGE), SystemTime::now()),
            0
        );
        assert!(path.exists());
        // Seen from far enough ahead it is stale after all.
        let later = SystemTime::now() + 200 * HOUR;
        assert_eq!(clean_tmp(&root.0, Some(STALE_TMP_AGE), later), 1);
        assert!(!path.exists());
    }

    #[test]
    fn a_missing_tmp_directory_is_not_an_error() {
        let root = TempRoot::new("missing");
        assert_eq!(clean_tmp(&root.0.join("tmp"), None, SystemTime::now()), 0);
    }

    #[test]
    #[cfg(unix)]
    fn a_symbolic_link_is_removed_not_its_target() {
        let root = TempRoot::new("link");
        let tmp = root.0.join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let target = root.0.join("target");
        fs::write(&target, b"keep me").unwrap();
        std::os::unix::fs::symlink(&target, tmp.join("link")).unwrap();
        assert_eq!(clean_tmp(&tmp, None, SystemTime::now()), 1);
        assert!(names_in(&tmp).is_empty());
        assert_eq!(fs::read(&target).unwrap(), b"keep me");
    }

    #[test]
    fn protocol_names() {
        let mut t = Transaction::default();
        assert_eq!(protocol(&t, false), "ESMTP");
        t.hello = Some((HelloVerb::Ehlo, "c".into()));
        assert_eq!(protocol(&t, false), "ESMTP");
        assert_eq!(protocol(&t, true), "ESMTPS");
        t.authenticated = Some("user".into());
        assert_eq!(protocol(&t, false), "ESMTPA");
        assert_eq!(protocol(&t, true), "ESMTPSA");
        t.hello = Some((HelloVerb::Helo, "c".into()));
        assert_eq!(protocol(&t, true), "SMTP");
        t.hello = Some((HelloVerb::Lhlo, "c".into()));
        assert_eq!(protocol(&t, true), "LMTP");
    }

    #[test]
    fn received_header_without_peer_or_greeting() {
        let t = Transaction::default();
        assert_eq!(
            trace_headers(&t, None, "mx.test", false, "1.M2P3Q4", 0),
            "Return-Path: <>\r\nReceived: from unknown (unknown)\r\n\
             \tby mx.test (smtpx) with ESMTP id 1.M2P3Q4; Thu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn header_text_cannot_break_lines() {
        assert_eq!(header_safe("a\r\nb\tc"), "a??b?c");
        assert!(matches!(header_safe("plain name"), Cow::Borrowed(_)));
    }

    #[test]
    fn hostname_escaping() {
        assert_eq!(escape_hostname("mx.test"), "mx.test");
        assert_eq!(escape_hostname("a/b:c"), "a\\057b\\072c");
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(68_256_000), "Wed, 01 Mar 1972 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_709_208_000),
            "Thu, 29 Feb 2024 12:00:00 +0000"
        );
        assert_eq!(
            rfc5322_date(1_795_674_954),
            "Thu, 26 Nov 2026 06:35:54 +0000"
        );
        // 2100 is not a leap year: February ends on the 28th.
        assert_eq!(
            rfc5322_date(4_107_542_399),
            "Sun, 28 Feb 2100 23:59:59 +0000"
        );
        assert_eq!(
            rfc5322_date(4_107_542_400),
            "Mon, 01 Mar 2100 00:00:00 +0000"
        );
        assert_eq!(
            rfc5322_date(253_402_300_799),
            "Fri, 31 Dec 9999 23:59:59 +0000"
        );
    }

    #[test]
    fn storage_errors() {
        let full = storage_error(&io::Error::from_raw_os_error(28));
        assert_eq!(
            full.to_bytes(),
            b"452 4.3.1 Error: insufficient system storage\r\n"
        );
        let full = storage_error(&io::Error::from(ErrorKind::StorageFull));
        assert_eq!(full.code(), ReplyCode::INSUFFICIENT_STORAGE);
        let other = storage_error(&io::Error::from(ErrorKind::PermissionDenied));
        assert_eq!(
            other.to_bytes(),
            b"451 4.3.0 Error: local error in processing\r\n"
        );
    }
}
