//! MAIL, RCPT and DATA (RFC 5321 §3.3, RFC 6409 §4–8, RFC 1870, RFC 6531).

use super::{Authenticated, DataClock, Delivery, Event, MailCheck, Pending, Phase, Session, later};
use crate::smtp::address::{ForwardPath, ReversePath};
use crate::smtp::dot::{DataOutcome, DataReader, DataStatus};
use crate::smtp::params::MailParams;
use crate::smtp::reply::{self, Reply};

/// One mail transaction, from an accepted MAIL to the reply after DATA.
#[derive(Debug)]
pub(super) struct Transaction {
    user: String,
    from: ReversePath,
    params: MailParams,
    recipients: Vec<ForwardPath>,
    /// A RCPT was refused: DATA without recipients then says why (P2).
    refused_recipient: bool,
}

impl Transaction {
    /// A transaction can only start for an authenticated user.
    fn new(user: &Authenticated, from: ReversePath, params: MailParams) -> Transaction {
        Transaction {
            user: user.user.clone(),
            from,
            params,
            recipients: Vec::new(),
            refused_recipient: false,
        }
    }
}

impl Session {
    pub(super) fn on_mail(&mut self, from: ReversePath, params: MailParams) {
        if self.helo.is_none() {
            return self.bad_command(reply::need_ehlo());
        }
        let Some(user) = &self.user else {
            return self.reply(reply::auth_required());
        };
        if self.transaction.is_some() {
            return self.bad_command(reply::nested_mail());
        }
        if self.delivered >= self.config.max_messages_per_session {
            return self.reply(reply::too_many_messages());
        }
        if params
            .size
            .is_some_and(|size| size > self.config.max_message_size as u64)
        {
            return self.reply(reply::message_too_big());
        }
        if let ReversePath::Mailbox(mailbox) = &from
            && mailbox.is_utf8()
            && !params.smtputf8
        {
            return self.reply(reply::utf8_needs_smtputf8());
        }
        if self.config.sender_must_match_user && !owns(&user.user, &from) {
            let sender = match &from {
                ReversePath::Null => String::new(),
                ReversePath::Mailbox(m) => m.to_string(),
            };
            return self.reply(reply::sender_not_owned(&sender, &user.user));
        }
        // The login may have been disabled or deleted since AUTH, and the disk may be full:
        // the runtime checks both before the transaction starts (`mail_checked`).
        let check = MailCheck {
            user: user.user.clone(),
        };
        self.pending_mail = Some(Transaction::new(user, from, params));
        self.request(Pending::Mail, Event::CheckMail(check));
    }

    pub(super) fn on_rcpt(&mut self, to: ForwardPath) {
        let max = self.config.max_recipients;
        let Some(tx) = &mut self.transaction else {
            return self.bad_command(reply::need_mail());
        };
        let refusal = if to.is_utf8() && !tx.params.smtputf8 {
            Some(reply::utf8_needs_smtputf8())
        } else if tx.recipients.len() >= max {
            Some(reply::too_many_recipients())
        } else {
            None
        };
        match refusal {
            Some(reply) => {
                tx.refused_recipient = true;
                self.reply(reply);
            }
            None => {
                tx.recipients.push(to);
                self.reply(reply::recipient_ok());
            }
        }
    }

    pub(super) fn on_data(&mut self) {
        let Some(tx) = &self.transaction else {
            return self.bad_command(reply::need_mail());
        };
        if tx.recipients.is_empty() {
            if tx.refused_recipient {
                return self.reply(reply::no_valid_recipients());
            }
            return self.bad_command(reply::need_rcpt());
        }
        let mut reader = DataReader::new(self.config.max_message_size, self.config.bare_newline);
        if let Some(size) = tx.params.size {
            reader.reserve(size);
        }
        self.reply(reply::start_data());
        self.phase = Phase::Data(reader);
        // RFC 5321 §4.5.3.2.5: a timeout per data block, not for the whole message; a
        // minimum average rate bounds how long a trickle can hold the slot (R2).
        self.data_clock = Some(DataClock {
            started: self.now,
            bytes: 0,
        });
        self.deadline = later(self.now, self.config.data_timeout);
    }

    /// Feeds buffered input to the DATA reader; false when no progress can be made.
    pub(super) fn step_data(&mut self) -> bool {
        let Phase::Data(reader) = &mut self.phase else {
            return false;
        };
        if !reader.is_done() {
            let (used, status) = reader.feed(self.input.bytes());
            self.input.consume(used);
            if status == DataStatus::NeedMore {
                return used > 0;
            }
        }
        let Phase::Data(reader) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return true;
        };
        self.data_clock = None;
        self.deadline = later(self.now, self.config.command_timeout);
        let Some(tx) = self.transaction.take() else {
            return true;
        };
        match reader.finish() {
            DataOutcome::TooBig => self.reply(reply::message_too_big()),
            DataOutcome::BareNewline => self.reply(reply::bare_newline()),
            DataOutcome::Complete(data) => match self.check_headers(&data) {
                Some(refusal) => self.reply(refusal),
                None => self.deliver(tx, data),
            },
        }
        true
    }

    fn deliver(&mut self, tx: Transaction, data: Vec<u8>) {
        let delivery = Delivery {
            user: tx.user,
            helo: self.helo.clone().unwrap_or_default(),
            peer: self.peer,
            tls: self.tls.clone(),
            mail_from: match tx.from {
                ReversePath::Null => String::new(),
                ReversePath::Mailbox(m) => m.to_string(),
            },
            rcpt_to: tx
                .recipients
                .iter()
                .map(|r| match r {
                    ForwardPath::Postmaster => "Postmaster".to_string(),
                    ForwardPath::Mailbox(m) => m.to_string(),
                })
                .collect(),
            data,
        };
        self.request(Pending::Delivery, Event::Deliver(delivery));
    }

    /// Header-section limits (L4) and loop detection (L5).
    fn check_headers(&self, data: &[u8]) -> Option<Reply> {
        let end = if data.starts_with(b"\r\n") {
            0
        } else {
            memchr::memmem::find(data, b"\r\n\r\n").map_or(data.len(), |i| i + 2)
        };
        if end > self.config.max_header_size {
            return Some(reply::header_too_large());
        }
        let header = data.get(..end).unwrap_or_default();
        let received = header
            .split(|&b| b == b'\n')
            .filter(|line| {
                line.get(..9)
                    .is_some_and(|h| h.eq_ignore_ascii_case(b"Received:"))
            })
            .count();
        (received > self.config.max_received_headers).then(reply::too_many_hops)
    }
}

/// Whether `user` may send as `from` (Postfix `reject_sender_login_mismatch`): a login
/// with a domain owns exactly that address; a bare login name owns that local part.
fn owns(user: &str, from: &ReversePath) -> bool {
    let ReversePath::Mailbox(mailbox) = from else {
        return false;
    };
    if user.contains('@') {
        mailbox.to_string().eq_ignore_ascii_case(user)
    } else {
        mailbox.unquoted_local().eq_ignore_ascii_case(user)
    }
}
