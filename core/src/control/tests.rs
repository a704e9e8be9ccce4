//! The control socket: requests and answers over a real Unix socket, the limits on what a peer
//! may send, and the socket's life beside the store it serves.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::store::tests::new_message;

struct Daemon {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    control: ControlServer,
}

fn daemon() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
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
        let stream = connect(self.dir.path())
            .unwrap()
            .expect("a listening daemon");
        call(self.control.socket(), stream, request).unwrap()
    }
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
            limit: Some(5)
        }),
        Ok(Answer::Messages(d.store.messages(None, None).unwrap()))
    );
    assert_eq!(
        d.ask(&Request::Message { id: id.0 }),
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
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join(CONTROL_SOCKET);
    // What a killed daemon leaves: a socket nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    assert!(connect(dir.path()).unwrap().is_none());

    let store = Arc::new(Store::open_in(dir.path(), 4).unwrap());
    let control = ControlServer::start(dir.path(), Arc::clone(&store)).unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(connect(dir.path()).unwrap().is_some());

    drop(control);
    assert!(!socket.exists());
    assert!(connect(dir.path()).unwrap().is_none());
    // The thread let go of the store: this is its last handle.
    assert!(Arc::try_unwrap(store).is_ok());
}

#[test]
fn changes_are_stamped_with_the_time_given() {
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("d".repeat(MAX_SOCKET_PATH_BYTES));
    let store = Arc::new(Store::open_in(&deep, 4).unwrap());
    let error = ControlServer::start(&deep, Arc::clone(&store)).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert!(
        error.to_string().contains("choose a shorter data_dir"),
        "{error}"
    );
    assert!(connect(&deep).unwrap().is_none());
}
