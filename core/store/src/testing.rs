//! Helpers for the tests of this crate and of the crates above it (cargo feature `testing`):
//! a tmpfs that fills up, a sample message, a real PostgreSQL ([`Postgres`]), and the
//! conformance suite every backend must pass ([`conformance`]).

pub mod conformance;
mod postgres;

pub use postgres::Postgres;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use atacama_core::message::{Attachment, Headers, ParsedMessage};
use atacama_core::smtp::TlsInfo;

use crate::{NewMessage, ReceivedTrace};

/// A tmpfs mounted on a new temporary directory, unmounted when dropped, even by a panic.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB; panics, saying why, where mounting is not allowed.
    pub fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let size = format!("size={mib}m,mode=0700");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "this test mounts a tmpfs, which needs root (CI runs as root): mount said {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A file named `name` in it, created empty, open to read and write.
    pub fn file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.path().join(name))
            .unwrap()
    }

    /// Grows (or shrinks) it to `mib` MiB in place: what an operator freeing space does.
    pub fn resize(&self, mib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file still open (a leaked handle in a failed test) must not keep it mounted.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A message from `user` with every field set, received at 2026-03-03 14:05:09 UTC.
pub fn new_message(user: &str, message_id: Option<&str>, in_reply_to: Option<&str>) -> NewMessage {
    NewMessage {
        received_at: UNIX_EPOCH + Duration::from_secs(1_772_546_709),
        user: user.into(),
        mail_from: format!("{user}@example.test"),
        rcpt_to: vec!["bob@example.test".into(), "carol@example.test".into()],
        trace: ReceivedTrace {
            helo: "client.example".into(),
            peer: "192.0.2.7".parse().unwrap(),
            hostname: "mail.example".into(),
            tls: Some(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_256_GCM_SHA384".into(),
            }),
        },
        parsed: ParsedMessage {
            headers: Headers {
                subject: Some("Hello".into()),
                from: Some(format!("{user}@example.test")),
                to: Some("bob@example.test".into()),
                date: Some("2026-03-03T14:05:00Z".into()),
                message_id: message_id.map(Into::into),
                in_reply_to: in_reply_to.map(Into::into),
            },
            text: "Hi *there*".into(),
            attachments: vec![Attachment {
                name: Some("a.txt".into()),
                media_type: "text/plain".into(),
                size: 3,
            }],
            problems: vec![],
        },
        html: "<p>Hi <b>there</b></p>".into(),
        data: b"Subject: Hello\r\n\r\nHi *there*\r\n..leading dot stays unstuffed\r\n".to_vec(),
        channel: "general".into(),
    }
}
