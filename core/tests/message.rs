//! `message::parse` over real-world-shaped messages, stored under `tests/mime/`.
//!
//! Each test asserts every stored field. The samples keep the CRLF line endings of SMTP;
//! `.gitattributes` there keeps git from touching them.

use atacama_core::message::{Attachment, Headers, ParsedMessage, parse};

fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/mime/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn parsed(name: &str) -> ParsedMessage {
    parse(&sample(name))
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

fn attachment(name: &str, media_type: &str, size: u64) -> Attachment {
    Attachment {
        name: some(name),
        media_type: media_type.to_owned(),
        size,
    }
}

const SAMPLES: [&str; 11] = [
    "attachment.eml",
    "base64-body.eml",
    "forward-attached.eml",
    "gmail-alternative.eml",
    "html-only.eml",
    "iso-2022-jp.eml",
    "latin1.eml",
    "malformed.eml",
    "outlook-quoted-printable.eml",
    "reply.eml",
    "utf8-subject.eml",
];

#[test]
fn multipart_alternative_shows_the_plain_part() {
    let expected = ParsedMessage {
        headers: Headers {
            subject: some("Lunch on Thursday?"),
            from: some("Alice Martin <alice.martin@gmail.com>"),
            to: some("Bob Stone <bob@example.org>, carol@example.net"),
            date: some("2024-03-05T09:15:42+01:00"),
            message_id: some("CAHx8fVz+Qk3mJ2pL9wR7tYb4nE6cD1sA0uF5gH8iK2jM3nO4p@mail.gmail.com"),
            in_reply_to: None,
        },
        text: "Hi Bob,\n\n\
               Are you free for lunch on Thursday? The new place on Rue Cler opens at noon.\n\n\
               Alice"
            .to_owned(),
        attachments: vec![],
        problems: vec![],
    };
    assert_eq!(parsed("gmail-alternative.eml"), expected);
}

#[test]
fn quoted_printable_body_is_decoded() {
    let expected = ParsedMessage {
        headers: Headers {
            subject: some("Q3 planning – next steps"),
            from: some("\"Dupont, Marie\" <marie.dupont@contoso.com>"),
            to: some("team@contoso.com"),
            date: some("2024-06-12T14:03:11Z"),
            message_id: some(
                "AM0PR07MB4410C2D1E6F0A1B2C3D4E5F6A7B8C9D0@AM0PR07MB4410.eurprd07.prod.outlook.com",
            ),
            in_reply_to: None,
        },
        text: "Hello all,\n\n\
               Thanks for yesterday’s meeting. Here is a summary of what we agreed on, so that \
               nobody has to dig through the recording:\n\n\
               - the budget review moves to 1 July\n\
               - François owns the vendor shortlist\n\
               - we meet again on Friday at 10:00 = 11:00 CET\n\n\
               Best regards,\n\
               Marie"
            .to_owned(),
        attachments: vec![],
        problems: vec![],
    };
    assert_eq!(parsed("outlook-quoted-printable.eml"), expected);
}

#[test]
fn base64_body_is_decoded() {
    let expected = ParsedMessage {
        headers: Headers {
            subject: some("[nas01] Backup nightly-home: success"),
            from: some("backupd <backupd@nas01.example.net>"),
            to: some("admin@example.net"),
            date: some("2024-11-02T03:14:07Z"),
            message_id: some("20241102031407.4F2A1C0B@nas01.example.net"),
            in_reply_to: None,
        },
        text: "Backup job \"nightly-home\" finished.\n\n\
               Status:   success\n\
               Größe:    1,2 GB\n\
               Duration: 00:14:07\n\n\
               -- \n\
               backupd on nas01"
            .to_owned(),
        attachments: vec![],
        problems: vec![],
    };
    assert_eq!(parsed("base64-body.eml"), expected);
}

#[test]
fn iso_8859_1_words_and_body_become_utf8() {
    let expected = ParsedMessage {
        headers: Headers {
            subject: some("Réunion à l'hôtel"),
            from: some("André Lévesque <andre.levesque@exemple.fr>"),
            to: some("Zoé Martin <zoe.martin@exemple.fr>"),
            date: some("2019-10-14T17:42:05+02:00"),
            message_id: some("5DA49A2D.7010403@exemple.fr"),
            in_reply_to: None,
        },
        text: "Bonjour Zoé,\n\n\
               La réunion aura lieu à l'hôtel, salle « Île-de-France », à 9 h 30.\n\
               N'oubliez pas le câble HDMI !\n\n\
               Cordialement,\n\
               André"
            .to_owned(),
        attachments: vec![],
        problems: vec![],
    };
    assert_eq!(parsed("latin1.eml"), expected);
}

#[test]
fn utf8_encoded_words_are_decoded_and_joined() {
    let expected = ParsedMessage {
        headers: Headers {
            subject: some("日本語の件名 🎉 お知らせ"),
            from: some("田中 ゆき <yuki.tanaka@example.jp>"),
            to: some("team@example.jp"),
            date: some("2024-12-20T18:30:00+09:00"),
            message_id: some("a9f3e2c1-7b4d-4e8f-9a0b-1c2d3e4f5a6b@example.jp"),
            in_reply_to: None,
        },
        text: "皆さん、\n\n忘年会は12月27日に決まりました。\nよろしくお願いします。".to_owned(),
        attachments: vec![],
        problems: vec![],
    };
    assert_eq!(parsed("utf8-subject.eml"), expected);
}

#[test]
fn iso_2022_jp_becomes_utf8() {
    let expected = ParsedMessage {
        headers: Headers {
            subject: some("会議の件"),
            from: some("suzuki@example.co.jp"),
            to: some("yamada@example.co.jp"),
            date: some("2024-04-03T16:20:00+09:00"),
            message_id: some("20240403162000.1234@example.co.jp"),
            in_reply_to: None,
        },
        text: "山田様\n\n明日の会議は十時からです。".to_owned(),
        attachments: vec![],
        problems: vec![],
    };
    assert_eq!(parsed("iso-2022-jp.eml"), expected);
}

#[test]
fn attachments_are_listed_with_decoded_sizes() {
    let expected = ParsedMessage {
        headers: Headers {
            subject: some("Rechnung und Logo"),
            from: some("Jonas Weber <jonas.weber@example.de>"),
            to: some("buchhaltung@example.de"),
            date: some("2024-03-07T11:02:33+01:00"),
            message_id: some("7c1e5b8a-3f2d-4a6e-b9c0-d1e2f3a4b5c6@example.de"),
            in_reply_to: None,
        },
        // format=flowed: the soft break after "Telefon" is joined.
        text: "Hallo zusammen,\n\n\
               anbei die Rechnung für März und das neue Logo, wie am Telefon besprochen.\n\n\
               Viele Grüße\n\
               Jonas"
            .to_owned(),
        attachments: vec![
            // RFC 2231 file name; 224 bytes of PDF sent as 300 characters of base64.
            attachment("Rechnung März.pdf", "application/pdf", 224),
            attachment("logo.png", "image/png", 70),
        ],
        problems: vec![],
    };
    assert_eq!(parsed("attachment.eml"), expected);
}

#[test]
fn attached_message_is_listed_with_its_own_size() {
    let expected = ParsedMessage {
        headers: Headers {
            subject: some("Fwd: Trail map"),
            from: some("Bob Stone <bob@example.org>"),
            to: some("Alice Martin <alice.martin@gmail.com>"),
            date: some("2024-03-05T08:00:00+01:00"),
            message_id: some("fwd-trail-map@example.org"),
            in_reply_to: None,
        },
        text: "See below.".to_owned(),
        // The 248 bytes of the forwarded message, not its text or the whole mail.
        attachments: vec![attachment("Trail map.eml", "message/rfc822", 248)],
        problems: vec![],
    };
    assert_eq!(parsed("forward-attached.eml"), expected);
}

#[test]
fn html_only_message_is_converted_to_text() {
    let expected = ParsedMessage {
        headers: Headers {
            subject: some("Atacama Weekly #42: new trails and a summer sale"),
            from: some("Atacama Outfitters <news@example.com>"),
            to: some("sam@example.org"),
            date: some("2024-06-13T08:00:00-04:00"),
            message_id: some(
                "0100018f8a1b2c3d-4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8-000000@email.example.com",
            ),
            in_reply_to: None,
        },
        // No title, style or conditional comment; entities decoded; markup-shaped blocks.
        text: "Atacama Weekly #42\n\n\
               Hello Sam,\n\n\
               This week in the desert: three new trails, a night-sky guide & our summer sale.\n\n\
               * Trail maps for San Pedro\n\
               * Star-gazing tips – bring a red lamp\n\
               * 20 % off all tents\n\n\
               Read the full issue (https://news.example.com/c/42?u=sam&src=mail)\n\n\
               Questions? Write to help@example.com.\n\n\
               ----\n\n\
               © 2024 Atacama Outfitters · Unsubscribe (https://news.example.com/unsubscribe?u=sam)"
            .to_owned(),
        attachments: vec![],
        problems: vec![],
    };
    assert_eq!(parsed("html-only.eml"), expected);
}

#[test]
fn reply_keeps_its_parent_id_and_joins_flowed_quotes() {
    let expected = ParsedMessage {
        headers: Headers {
            subject: some("Re: Lunch on Thursday?"),
            from: some("Bob Stone <bob@example.org>"),
            to: some("Alice Martin <alice.martin@gmail.com>"),
            date: some("2024-03-05T10:02:17+01:00"),
            message_id: some("e4d3c2b1-a0f9-4e8d-b7c6-5a4b3c2d1e0f@example.org"),
            in_reply_to: some("CAHx8fVz+Qk3mJ2pL9wR7tYb4nE6cD1sA0uF5gH8iK2jM3nO4p@mail.gmail.com"),
        },
        text: "Thursday works for me. Shall we meet at the corner of Rue Cler at 12:15 so we get \
               a table before the rush?\n\n\
               Bob\n\n\
               On 05/03/2024 09:15, Alice Martin wrote:\n\
               > Hi Bob,\n\
               >\n\
               > Are you free for lunch on Thursday? The new place on Rue Cler opens at noon.\n\
               >\n\
               > Alice"
            .to_owned(),
        attachments: vec![],
        problems: vec![],
    };
    assert_eq!(parsed("reply.eml"), expected);
}

#[test]
fn malformed_message_keeps_what_can_be_read() {
    // A line that is no header field, an impossible date, an unclosed Message-ID, invalid
    // base64 and no closing boundary.
    let expected = ParsedMessage {
        headers: Headers {
            subject: some("Your invoice"),
            from: some("billing@broken-mailer.example"),
            to: some("customer@example.org"),
            date: None,
            message_id: None,
            in_reply_to: None,
        },
        text: "Please find your invoice attached.".to_owned(),
        attachments: vec![attachment("invoice.pdf", "application/pdf", 34)],
        problems: vec![
            "attachment \"invoice.pdf\" could not be decoded (bad transfer encoding or \
             unterminated MIME part): its size is that of the bytes as received"
                .to_owned(),
        ],
    };
    assert_eq!(parsed("malformed.eml"), expected);
}

#[test]
fn bare_lf_line_endings_give_the_same_fields() {
    // Some local tools hand over LF-only messages. Only sizes of bytes kept as they are (an
    // attached message, an undecodable part) change with the line endings.
    fn comparable(mut parsed: ParsedMessage) -> ParsedMessage {
        let undecoded = !parsed.problems.is_empty();
        for attachment in &mut parsed.attachments {
            if undecoded || attachment.media_type == "message/rfc822" {
                attachment.size = 0;
            }
        }
        parsed
    }
    for name in SAMPLES {
        let crlf = sample(name);
        let lf = String::from_utf8_lossy(&crlf).replace("\r\n", "\n");
        if std::str::from_utf8(&crlf).is_ok() {
            let (with_crlf, with_lf) = (parse(&crlf), parse(lf.as_bytes()));
            assert_eq!(comparable(with_lf), comparable(with_crlf), "{name}");
        }
    }
}

#[test]
fn every_sample_is_tested() {
    let dir = format!("{}/tests/mime", env!("CARGO_MANIFEST_DIR"));
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{dir}: {error}"))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".eml"))
        .collect();
    found.sort();
    assert_eq!(found, SAMPLES);
}
