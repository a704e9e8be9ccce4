//! The control socket: requests and answers over a real Unix socket, the limits on what a peer
//! may send, and the socket's life beside the store it serves.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::*;
use atacama_store::Store;
use atacama_store::data_dir::DataDir;
use atacama_store::testing::new_message;

/// A temporary directory as a data directory must be: 0700 (tempfile makes them 0755).
fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

struct Daemon {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    control: ControlServer,
}

fn daemon() -> Daemon {
    let dir = private_dir();
    let store = Arc::new(Store::open_in(dir.path(), 4).unwrap());
    let control = ControlServer::start(dir.path(), Arc::clone(&store)).unwrap();
    Daemon {
        dir,
        store,
        control,
    }
}

impl Daemon {
    fn ask(&self, request: &Request) -> Result<Answer, StoreError> {
        ask(self.dir.path(), request)
    }
}

fn ask(data_dir: &Path, request: &Request) -> Result<Answer, StoreError> {
    let stream = connect(&data_dir_of(data_dir))
        .unwrap()
        .expect("a listening daemon");
    call(&data_dir.join(CONTROL_SOCKET), stream, request).unwrap()
}

fn data_dir_of(path: &Path) -> DataDir {
    DataDir::prepare(path).unwrap()
}

#[test]
fn every_request_is_answered_as_the_store_would() {
    let d = daemon();
    let add = Request::AddUser {
        name: "alice".into(),
        password: "pw one".into(),
    };
    assert_eq!(d.ask(&add), Ok(Answer::Done));
    assert_eq!(d.ask(&add), Err(StoreError::UserExists("alice".into())));
    assert!(d.store.verify_user("alice", "pw one").unwrap());
    let set = Request::SetPassword {
        name: "alice".into(),
        password: "pw two".into(),
    };
    assert_eq!(d.ask(&set), Ok(Answer::Done));
    assert!(d.store.verify_user("alice", "pw two").unwrap());
    assert_eq!(
        d.ask(&Request::DisableUser {
            name: "alice".into()
        }),
        Ok(Answer::Done)
    );
    assert!(!d.store.verify_user("alice", "pw two").unwrap());
    assert_eq!(
        d.ask(&Request::EnableUser {
            name: "alice".into()
        }),
        Ok(Answer::Done)
    );
    let alice = d.store.user("alice").unwrap();
    assert_eq!(
        d.ask(&Request::User {
            name: "alice".into()
        }),
        Ok(Answer::User(alice.clone()))
    );
    assert_eq!(d.ask(&Request::Users), Ok(Answer::Users(vec![alice])));
    assert_eq!(
        d.ask(&Request::DeleteUser { name: "bob".into() }),
        Err(StoreError::NoSuchUser("bob".into()))
    );

    let id = d
        .store
        .insert_message(&new_message("alice", Some("m1@x"), None))
        .unwrap();
    assert_eq!(
        d.ask(&Request::Messages {
            user: Some("alice".into()),
            before: None,
            limit: 5
        }),
        Ok(Answer::Messages(atacama_store::MessagePage {
            messages: d.store.messages(None, None).unwrap(),
            more: false
        }))
    );
    d.store
        .insert_message(&new_message("alice", Some("m2@x"), None))
        .unwrap();
    // A page through the socket: message 2 of 1 and 2, and word that 1 is left.
    assert_eq!(
        d.ask(&Request::Messages {
            user: None,
            before: Some(3),
            limit: 1
        })
        .map(|answer| match answer {
            Answer::Messages(page) => (page.messages.len(), page.messages[0].id.0, page.more),
            _ => (0, 0, false),
        }),
        Ok((1, 2, true))
    );
    assert_eq!(
        d.ask(&Request::Message {
            id: id.0,
            bodies: Bodies::BOTH
        }),
        Ok(Answer::Message(Box::new(d.store.message(id).unwrap())))
    );
    // Every byte value survives the trip (base64 in the JSON).
    let raw = d.store.raw_message(id).unwrap();
    assert!(raw.contains(&b'\n'));
    assert_eq!(
        d.ask(&Request::RawMessage { id: id.0 }),
        Ok(Answer::Raw(raw))
    );
    assert_eq!(
        d.ask(&Request::RawMessage { id: 99 }),
        Err(StoreError::NoSuchMessage(99))
    );
}

#[test]
fn the_log_names_the_request_but_never_the_password() {
    let request = Request::AddUser {
        name: "alice".into(),
        password: "hunter2".into(),
    };
    assert_eq!(request.describe(), "user add \"alice\"");
    assert!(!format!("{request:?}").contains("hunter2"));
    let passwd = Request::SetPassword {
        name: "alice".into(),
        password: "hunter2".into(),
    };
    assert!(!format!("{passwd:?}").contains("hunter2"));
}

fn send_raw(d: &Daemon, bytes: &[u8]) -> Vec<u8> {
    let mut stream = UnixStream::connect(d.control.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The daemon may close before taking everything; that is its answer.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    answer
}

#[test]
fn bad_frames_get_no_answer_and_the_next_client_is_served() {
    let d = daemon();
    // Over the limit: refused from the length alone.
    let mut huge = (MAX_REQUEST_BYTES + 1).to_be_bytes().to_vec();
    huge.extend_from_slice(&[b'x'; 1024]);
    assert_eq!(send_raw(&d, &huge), b"");
    // Shorter than it says.
    let mut short = 100u32.to_be_bytes().to_vec();
    short.extend_from_slice(b"{\"Users\"");
    assert_eq!(send_raw(&d, &short), b"");
    // Not a request.
    let mut garbage = 9u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(b"\"Nothing\"");
    assert_eq!(send_raw(&d, &garbage), b"");
    // Nothing at all: a client looking whether a daemon listens.
    assert_eq!(send_raw(&d, b""), b"");
    assert_eq!(d.ask(&Request::Users), Ok(Answer::Users(vec![])));
}

#[test]
fn frames_round_trip_and_are_bounded() {
    let mut wire = Vec::new();
    write_frame(&mut wire, b"hello").unwrap();
    assert_eq!(wire, b"\0\0\0\x05hello");
    assert_eq!(read_frame(&mut wire.as_slice(), 5).unwrap(), b"hello");
    let error = read_frame(&mut wire.as_slice(), 4).unwrap_err();
    assert_eq!(
        error.to_string(),
        "a frame of 5 bytes is over the limit of 4"
    );
    let error = read_frame(&mut &wire[..7], 5).unwrap_err();
    assert_eq!(error.to_string(), "the frame ended after 3 of 5 bytes");
    let error = read_frame(&mut &wire[..2], 5).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn the_socket_is_private_replaces_a_stale_one_and_goes_with_the_server() {
    let dir = private_dir();
    let socket = dir.path().join(CONTROL_SOCKET);
    // What a killed daemon leaves: a socket nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    assert!(connect(&data_dir_of(dir.path())).unwrap().is_none());

    let store = Arc::new(Store::open_in(dir.path(), 4).unwrap());
    let control = ControlServer::start(dir.path(), Arc::clone(&store)).unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(connect(&data_dir_of(dir.path())).unwrap().is_some());
    // Bound in a private directory, which is gone once the socket is in place.
    assert!(!dir.path().join(BIND_DIR).exists());

    drop(control);
    assert!(!socket.exists());
    assert!(connect(&data_dir_of(dir.path())).unwrap().is_none());
    // The thread let go of the store: this is its last handle.
    assert!(Arc::try_unwrap(store).is_ok());
}

#[test]
fn changes_are_stamped_with_the_time_given() {
    let dir = private_dir();
    let store = Store::open_in(dir.path(), 4).unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(1_772_546_709);
    let add = Request::AddUser {
        name: "alice".into(),
        password: "pw".into(),
    };
    assert_eq!(execute(&store, &add, at), Ok(Answer::Done));
    assert_eq!(store.user("alice").unwrap().created, 1_772_546_709);
}

/// A data directory too deep for a socket address: the server says what to change, and the
/// command line, which no daemon can answer there, opens the file itself.
#[test]
fn a_data_dir_too_deep_for_a_socket_is_named() {
    let dir = private_dir();
    let deep = dir.path().join("d".repeat(MAX_SOCKET_PATH_BYTES));
    let store = Arc::new(Store::open_in(&deep, 4).unwrap());
    let error = ControlServer::start(&deep, Arc::clone(&store)).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert!(
        error.to_string().contains("choose a shorter data_dir"),
        "{error}"
    );
    assert!(connect(&data_dir_of(&deep)).unwrap().is_none());
}

/// A stored message whose bodies are large and easy to find: 80 KB of text, 80 KB of HTML.
fn large_bodies(store: &Store) -> MessageId {
    let mut message = new_message("alice", Some("big@x"), None);
    message.parsed.text = "TEXTBODY".repeat(10_000);
    message.html = "HTMLBODY".repeat(10_000);
    store.insert_message(&message).unwrap()
}

/// What the daemon writes for `request`: the frame's JSON.
fn wire_answer(store: &Store, request: &Request) -> String {
    let outcome = execute(store, request, SystemTime::now());
    String::from_utf8(serde_json::to_vec(&outcome).unwrap()).unwrap()
}

#[test]
fn a_message_crosses_the_socket_with_only_the_bodies_asked_for() {
    let d = daemon();
    let id = large_bodies(&d.store);
    let stored = d.store.message(id).unwrap();
    for (bodies, text, html) in [
        (Bodies::NONE, false, false),
        (Bodies::TEXT, true, false),
        (Bodies::HTML, false, true),
        (Bodies::BOTH, true, true),
    ] {
        let request = Request::Message { id: id.0, bodies };
        let wire = wire_answer(&d.store, &request);
        assert_eq!(wire.contains("TEXTBODY"), text, "{bodies:?}");
        assert_eq!(wire.contains("HTMLBODY"), html, "{bodies:?}");
        let Ok(Answer::Message(got)) = d.ask(&request) else {
            panic!("{bodies:?}: not a message");
        };
        assert_eq!(got.text.is_empty(), !text);
        assert_eq!(got.html.is_empty(), !html);
        // Everything else is there, whatever the bodies.
        let fields = |m: &StoredMessage| {
            (
                m.id,
                m.headers.subject.clone(),
                m.size,
                m.attachments.clone(),
            )
        };
        assert_eq!(fields(&got), fields(&stored));
    }
    // The fields alone are small: the 160 KB of bodies are not on the wire.
    let fields_only = wire_answer(
        &d.store,
        &Request::Message {
            id: id.0,
            bodies: Bodies::NONE,
        },
    );
    assert!(fields_only.len() < 2_000, "{}", fields_only.len());
}

/// `messages show --raw` asks for the bytes alone: neither the text nor the HTML travels.
#[test]
fn a_raw_message_request_carries_neither_text_nor_html() {
    let d = daemon();
    let id = large_bodies(&d.store);
    let wire = wire_answer(&d.store, &Request::RawMessage { id: id.0 });
    assert!(!wire.contains("TEXTBODY") && !wire.contains("HTMLBODY"));
    let raw = d.store.raw_message(id).unwrap();
    // Base64 of the raw bytes and the envelope of the answer: nothing more.
    assert!(
        wire.len() <= raw.len().div_ceil(3) * 4 + 32,
        "{}",
        wire.len()
    );
    assert_eq!(
        d.ask(&Request::RawMessage { id: id.0 }),
        Ok(Answer::Raw(raw))
    );
}

#[test]
fn the_log_says_which_bodies_a_message_request_asked_for() {
    let request = Request::Message {
        id: 7,
        bodies: Bodies::HTML,
    };
    assert_eq!(request.describe(), "messages show 7 text=false html=true");
}

/// A client that sends a `user list` request a byte at a time, `pause` apart, then reads.
fn trickle(socket: &Path, pause: Duration) -> std::thread::JoinHandle<(Vec<u8>, Duration)> {
    let mut stream = UnixStream::connect(socket).unwrap();
    std::thread::spawn(move || {
        let started = Instant::now();
        let frame = {
            let mut frame = 9u32.to_be_bytes().to_vec();
            frame.extend_from_slice(b"\"Users\"  ");
            frame
        };
        for byte in frame {
            if stream.write_all(&[byte]).is_err() {
                break;
            }
            std::thread::sleep(pause);
        }
        let mut answer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
        (answer, started.elapsed())
    })
}

#[test]
fn a_trickling_client_delays_no_other_and_is_cut_at_the_request_deadline() {
    let d = daemon();
    let trickler = trickle(d.control.socket(), Duration::from_millis(900));
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        let asked = Instant::now();
        assert_eq!(d.ask(&Request::Users), Ok(Answer::Users(vec![])));
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
    }
    // 13 bytes 0.9 s apart would take 11.7 s: the whole request had 5 s.
    let (answer, took) = trickler.join().unwrap();
    assert_eq!(answer, b"");
    assert!(took >= REQUEST_DEADLINE, "{took:?}");
    assert!(took < REQUEST_DEADLINE + Duration::from_secs(2), "{took:?}");
}

#[test]
fn past_the_cap_a_client_waits_for_a_slot_and_is_then_served() {
    let d = daemon();
    let idle: Vec<UnixStream> = (0..MAX_CLIENTS)
        .map(|_| UnixStream::connect(d.control.socket()).unwrap())
        .collect();
    let dir = d.dir.path().to_path_buf();
    let waiting = std::thread::spawn(move || ask(&dir, &Request::Users));
    // Every slot is held by a connection that sends nothing: no answer can come yet.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished());
    let freed = Instant::now();
    drop(idle);
    assert_eq!(waiting.join().unwrap(), Ok(Answer::Users(vec![])));
    assert!(
        freed.elapsed() < Duration::from_secs(1),
        "{:?}",
        freed.elapsed()
    );
}

#[test]
fn dropping_the_server_waits_for_no_client_and_lets_go_of_the_store() {
    let dir = private_dir();
    let store = Arc::new(Store::open_in(dir.path(), 4).unwrap());
    let control = ControlServer::start(dir.path(), Arc::clone(&store)).unwrap();
    // Every slot taken by a trickler, and one more client waiting in the listen queue.
    let tricklers: Vec<_> = (0..MAX_CLIENTS)
        // 13 bytes 0.3 s apart: the request is whole after the stop, within its deadline.
        .map(|_| trickle(control.socket(), Duration::from_millis(300)))
        .collect();
    let _queued = UnixStream::connect(control.socket()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let dropping = Instant::now();
    drop(control);
    assert!(
        dropping.elapsed() < Duration::from_millis(500),
        "{:?}",
        dropping.elapsed()
    );
    // Nothing of the server holds the store while its clients read: it can close now.
    assert!(Arc::try_unwrap(store).is_ok());
    for trickler in tricklers {
        assert_eq!(
            trickler.join().unwrap().0,
            b"",
            "no request runs after the stop"
        );
    }
}

#[test]
fn a_stale_bind_directory_is_replaced_and_a_link_there_is_not_followed() {
    let dir = private_dir();
    let elsewhere = private_dir();
    std::fs::write(elsewhere.path().join("s"), "keep").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(BIND_DIR)).unwrap();
    let store = Arc::new(Store::open_in(dir.path(), 4).unwrap());
    let control = ControlServer::start(dir.path(), Arc::clone(&store)).unwrap();
    assert_eq!(
        std::fs::read_to_string(elsewhere.path().join("s")).unwrap(),
        "keep"
    );
    assert!(!dir.path().join(BIND_DIR).exists());
    drop(control);
    // What a start that failed half-way leaves: the directory with a socket in it.
    std::fs::create_dir(dir.path().join(BIND_DIR)).unwrap();
    drop(std::os::unix::net::UnixListener::bind(dir.path().join(BIND_DIR).join("s")).unwrap());
    let control = ControlServer::start(dir.path(), Arc::clone(&store)).unwrap();
    assert!(!dir.path().join(BIND_DIR).exists());
    assert_eq!(ask(dir.path(), &Request::Users), Ok(Answer::Users(vec![])));
    drop(control);
}

#[test]
fn a_deadline_covers_all_reads_together() {
    let (mut client, server) = UnixStream::pair().unwrap();
    client.write_all(b"ab").unwrap();
    let mut reading = server::Deadline::new(&server, Duration::from_millis(200));
    let mut buf = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut reading, &mut buf).unwrap(), 1);
    std::thread::sleep(Duration::from_millis(250));
    // A byte is there, but the time is up.
    let error = std::io::Read::read(&mut reading, &mut buf).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(
        reading.explain(error).to_string(),
        "a client took more than 200ms: closed"
    );
}
