//! What an operator installs from `systemd/`: the units pass `systemd-analyze verify` and
//! score 2.0 or lower in `systemd-analyze security`, the socket units name their sockets the
//! way the daemon expects, the sysusers.d and tmpfiles.d snippets apply to a fresh root, the
//! example configuration is accepted, and `systemd/install.sh` stages every file with its mode
//! under `DESTDIR` without touching the host. PID 1 is not systemd here and in CI: nothing is
//! started, every check is offline.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use atacama_tests::Binary;
use atacama_tests::tools::{self, ToolRun};

/// The Debian package with systemd-analyze, systemd-sysusers and systemd-tmpfiles.
const SYSTEMD: &str = "systemd";

const SERVICE: &str = "atacama-mail.service";
const SOCKETS: [&str; 3] = [
    "atacama-mail-submission.socket",
    "atacama-mail-submissions.socket",
    "atacama-mail-http.socket",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn systemd_file(name: &str) -> PathBuf {
    repo().join("systemd").join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The `Key=value` lines of a unit file as (section, key, value), in order.
fn directives(unit: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, value)) = line.split_once('=') {
            out.push((section.clone(), key.to_string(), value.to_string()));
        } else {
            panic!("not a unit file line: {line:?}");
        }
    }
    out
}

/// Every value of `section`.`key`, in order.
fn values(unit: &[(String, String, String)], section: &str, key: &str) -> Vec<String> {
    unit.iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.clone())
        .collect()
}

/// The one value of `section`.`key`.
fn value(unit: &[(String, String, String)], section: &str, key: &str) -> String {
    let all = values(unit, section, key);
    assert_eq!(
        all.len(),
        1,
        "[{section}] {key}= should be set once: {all:?}"
    );
    all[0].clone()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

// --- the units --------------------------------------------------------------------------------

/// The units with `ExecStart` pointing at the built daemon (nothing is in /usr/local/bin here),
/// verified together so `Sockets=`, `Service=` and `Requires=` must resolve.
#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let daemon = Binary::Smol.path();
    let service = read(&systemd_file(SERVICE));
    assert!(service.contains("ExecStart=/usr/local/bin/atacama-mail "));
    let service = service.replace(
        "ExecStart=/usr/local/bin/atacama-mail ",
        &format!("ExecStart={} ", daemon.display()),
    );
    std::fs::write(dir.path().join(SERVICE), service).expect("write the service");
    let mut args = vec!["verify".to_string(), SERVICE.to_string()];
    for socket in SOCKETS {
        std::fs::copy(systemd_file(socket), dir.path().join(socket)).expect("copy a socket");
        args.push(socket.to_string());
    }
    let mut command = Command::new(tools::require("systemd-analyze", SYSTEMD));
    command.args(&args).current_dir(dir.path());
    let run = tools::run(command, None).success("systemd-analyze verify");
    // Unknown keys and bad values are only warnings: any output is a finding.
    assert_eq!(run.stderr, "", "systemd-analyze verify complained");
    assert_eq!(run.stdout, "", "systemd-analyze verify complained");
}

/// The overall exposure of `systemd-analyze security --offline=true`, and the whole report.
fn exposure(unit: &Path) -> (f64, ToolRun) {
    let unit = unit.display().to_string();
    let run = tools::run_program(
        "systemd-analyze",
        SYSTEMD,
        &["security", "--offline=true", "--no-pager", &unit],
    )
    .success("systemd-analyze security");
    let prefix = format!("Overall exposure level for {SERVICE}: ");
    let score = run
        .stdout
        .lines()
        .find_map(|l| l.split_once(&prefix).map(|(_, rest)| rest.to_string()))
        .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", run.stdout));
    let score: f64 = score
        .parse()
        .unwrap_or_else(|e| panic!("exposure {score:?}: {e}"));
    (score, run)
}

#[test]
fn service_exposure_is_at_most_2_0() {
    let (score, run) = exposure(&systemd_file(SERVICE));
    eprintln!("systemd-analyze security --offline=true {SERVICE}: {score}");
    assert!(
        score <= 2.0,
        "exposure {score} > 2.0 (\"OK\" ends at 2.0):\n{}",
        run.stdout
    );
}

/// The promises of issue 7 and README.md, as settings; and the directory modes agree with the
/// tmpfiles.d snippet (a different mode makes systemd warn on every start).
#[test]
fn service_runs_unprivileged_sandboxed_and_reloads_on_sighup() {
    let unit = directives(&read(&systemd_file(SERVICE)));
    let exact = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/local/bin/atacama-mail --config /etc/atacama/mail/config.toml \
             --data-dir /var/lib/atacama-mail serve",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("User", "atacama-mail"),
        ("Group", "atacama-mail"),
        ("StateDirectory", "atacama-mail"),
        ("ConfigurationDirectory", "atacama/mail"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
    ];
    for (key, expected) in exact {
        assert_eq!(value(&unit, "Service", key), expected, "{key}=");
    }
    assert_eq!(
        values(&unit, "Service", "SystemCallFilter"),
        ["@system-service", "~@privileged @resources"]
    );
    assert_eq!(value(&unit, "Install", "WantedBy"), "multi-user.target");

    let tmpfiles = read(&systemd_file("tmpfiles.d-atacama-mail.conf"));
    let tmpfiles_mode = |path: &str| {
        tmpfiles
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&"d") && f.get(1) == Some(&path))
            .and_then(|f| f.get(2).map(|m| m.to_string()))
            .unwrap_or_else(|| panic!("tmpfiles.d has no `d {path}` line"))
    };
    assert_eq!(
        value(&unit, "Service", "StateDirectoryMode"),
        tmpfiles_mode("/var/lib/atacama-mail")
    );
    assert_eq!(
        value(&unit, "Service", "ConfigurationDirectoryMode"),
        tmpfiles_mode("/etc/atacama/mail")
    );
}

/// `FileDescriptorName=` names every socket of its unit, so one unit with both ports would
/// hand the daemon two sockets called `submissions`: implicit TLS on 587. One unit per port,
/// named as `atacama_server::systemd::activated_listeners` expects, all passed to the service.
#[test]
fn each_socket_unit_passes_one_port_under_the_name_the_daemon_expects() {
    let expected = BTreeMap::from([
        ("atacama-mail-submission.socket", ("587", "submission")),
        ("atacama-mail-submissions.socket", ("465", "submissions")),
        ("atacama-mail-http.socket", ("127.0.0.1:2580", "http")),
    ]);
    for (name, (port, fd_name)) in &expected {
        let unit = directives(&read(&systemd_file(name)));
        assert_eq!(values(&unit, "Socket", "ListenStream"), [*port], "{name}");
        assert_eq!(
            value(&unit, "Socket", "FileDescriptorName"),
            *fd_name,
            "{name}"
        );
        assert_eq!(value(&unit, "Socket", "Service"), SERVICE, "{name}");
        assert!(values(&unit, "Socket", "Accept").iter().all(|v| v == "no"));
        assert_eq!(value(&unit, "Install", "WantedBy"), "sockets.target");
    }
    let service = directives(&read(&systemd_file(SERVICE)));
    let both = SOCKETS.join(" ");
    assert_eq!(value(&service, "Service", "Sockets"), both);
    assert_eq!(value(&service, "Unit", "Requires"), both);
    assert!(values(&service, "Unit", "After").contains(&both));
    // Every socket unit in systemd/ is one of these.
    let mut found: Vec<String> = std::fs::read_dir(repo().join("systemd"))
        .expect("systemd/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".socket"))
        .collect();
    found.sort();
    let mut sockets = SOCKETS.to_vec();
    sockets.sort_unstable();
    assert_eq!(found, sockets);
}

// --- sysusers.d and tmpfiles.d -----------------------------------------------------------------

/// Applies both snippets to an empty root the way the install does on a host: the user and
/// group appear, then the directories with their modes and owners.
#[test]
fn sysusers_and_tmpfiles_snippets_apply_to_a_fresh_root() {
    let root = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(root.path().join("etc")).expect("etc/");
    let root_arg = format!("--root={}", root.path().display());
    let sysusers = systemd_file("sysusers.d-atacama-mail.conf");
    tools::run_program(
        "systemd-sysusers",
        SYSTEMD,
        &[&root_arg, &sysusers.display().to_string()],
    )
    .success("systemd-sysusers");
    let passwd = read(&root.path().join("etc/passwd"));
    let entry: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("atacama-mail:"))
        .unwrap_or_else(|| panic!("no atacama-mail user in {passwd:?}"))
        .split(':')
        .collect();
    let (uid, gid) = (entry[2].parse::<u32>(), entry[3].parse::<u32>());
    let (uid, gid) = (uid.expect("uid"), gid.expect("gid"));
    assert!((1..1000).contains(&uid), "a system user: {entry:?}");
    assert_eq!(entry[4], "Atacama Mail");
    assert_eq!(entry[5], "/var/lib/atacama-mail");
    assert_eq!(entry[6], "/usr/sbin/nologin");
    let group = read(&root.path().join("etc/group"));
    assert!(
        group.lines().any(|l| l == format!("atacama-mail:x:{gid}:")),
        "{group}"
    );

    // tmpfiles chowns, which only root can do (CI runs as root).
    if atacama_store::data_dir::euid() != 0 {
        eprintln!("not root: the tmpfiles.d snippet is not applied (CI runs it as root)");
        return;
    }
    let tmpfiles = systemd_file("tmpfiles.d-atacama-mail.conf");
    let run = tools::run_program(
        "systemd-tmpfiles",
        SYSTEMD,
        &[&root_arg, "--create", &tmpfiles.display().to_string()],
    )
    .success("systemd-tmpfiles --create");
    assert_eq!(run.stderr, "", "systemd-tmpfiles complained");
    use std::os::unix::fs::MetadataExt;
    for (path, want_mode, want_uid, want_gid) in [
        ("etc/atacama/mail", 0o750, 0, gid),
        ("var/lib/atacama-mail", 0o700, uid, gid),
    ] {
        let meta = std::fs::metadata(root.path().join(path)).expect(path);
        assert!(meta.is_dir(), "{path}");
        assert_eq!(meta.mode() & 0o7777, want_mode, "{path}");
        assert_eq!((meta.uid(), meta.gid()), (want_uid, want_gid), "{path}");
    }
}

// --- the example configuration ---------------------------------------------------------------

/// Every key of config.toml.example is known and valid: the daemon's own loader accepts it
/// once the certificate files it names exist (here: generated, in a temporary directory).
#[test]
fn example_config_is_accepted_by_the_daemon() {
    let dir = tempfile::tempdir().expect("temporary directory");
    atacama_server::tls::generate_self_signed(dir.path(), "mail.example.org").expect("a pair");
    let example = read(&systemd_file("config.toml.example"));
    let cert = dir.path().join(atacama_server::tls::SELF_SIGNED_CERT_FILE);
    let key = dir.path().join(atacama_server::tls::SELF_SIGNED_KEY_FILE);
    for line in [
        "cert = \"/etc/atacama/mail/cert.pem\"",
        "key  = \"/etc/atacama/mail/key.pem\"",
        "data_dir = \"/var/lib/atacama-mail\"",
    ] {
        assert!(example.contains(line), "config.toml.example lost {line:?}");
    }
    let config = dir.path().join("config.toml");
    let text = example
        .replace("/etc/atacama/mail/cert.pem", &cert.display().to_string())
        .replace("/etc/atacama/mail/key.pem", &key.display().to_string());
    std::fs::write(&config, text).expect("write the config");
    let data = dir.path().join("data");
    let run = Binary::Smol.run(
        [
            "--config",
            &config.display().to_string(),
            "--data-dir",
            &data.display().to_string(),
            "user",
            "list",
            "--json",
        ],
        None,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout_text().trim(), "[]");
}

// --- systemd/install.sh -------------------------------------------------------------------------

/// Stand-ins for everything a real install may run: they record the call and fail.
fn fake_tools(dir: &Path, record: &Path) -> String {
    for name in [
        "systemctl",
        "systemd-sysusers",
        "systemd-tmpfiles",
        "cargo",
        "chgrp",
        "chown",
    ] {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit 1\n",
                record.display()
            ),
        )
        .expect("write a fake tool");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{}:{path}", dir.display())
}

/// Runs systemd/install.sh with `env`, with the fake tools first on PATH.
fn install(env: &[(&str, &Path)], fakes: &Path, record: &Path) -> ToolRun {
    let mut command = Command::new(systemd_file("install.sh"));
    command.env("PATH", fake_tools(fakes, record));
    command
        .env_remove("DESTDIR")
        .env_remove("PREFIX")
        .env_remove("BIN");
    for (key, value) in env {
        command.env(key, value);
    }
    tools::run(command, None)
}

#[test]
fn install_script_stages_every_file_with_its_mode_and_touches_nothing_else() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (stage, fakes) = (dir.path().join("stage"), dir.path().join("bin"));
    std::fs::create_dir(&fakes).expect("bin/");
    let record = dir.path().join("calls");
    let daemon = Binary::Smol.path();
    let env = [("DESTDIR", stage.as_path()), ("BIN", daemon.as_path())];
    let run = install(&env, &fakes, &record).success("install.sh with DESTDIR");
    assert!(
        run.stdout
            .contains("installed /etc/atacama/mail/config.toml from the example"),
        "{run:?}"
    );

    let same = |installed: &str, source: &Path| {
        assert_eq!(
            std::fs::read(stage.join(installed)).expect(installed),
            std::fs::read(source).expect("the source"),
            "{installed} differs from {}",
            source.display()
        );
    };
    same("usr/local/bin/atacama-mail", &daemon);
    same(
        "etc/atacama/mail/config.toml",
        &systemd_file("config.toml.example"),
    );
    same(
        "usr/local/lib/systemd/system/atacama-mail.service",
        &systemd_file(SERVICE),
    );
    for socket in SOCKETS {
        same(
            &format!("usr/local/lib/systemd/system/{socket}"),
            &systemd_file(socket),
        );
    }
    same(
        "usr/local/lib/sysusers.d/atacama-mail.conf",
        &systemd_file("sysusers.d-atacama-mail.conf"),
    );
    same(
        "usr/local/lib/tmpfiles.d/atacama-mail.conf",
        &systemd_file("tmpfiles.d-atacama-mail.conf"),
    );
    same(
        "usr/local/share/doc/atacama-mail/README.md",
        &repo().join("README.md"),
    );

    let mut files = Vec::new();
    collect_files(&stage, &stage, &mut files);
    let expected: Vec<(String, u32)> = [
        ("etc/atacama/mail/config.toml", 0o640),
        ("usr/local/bin/atacama-mail", 0o755),
        (
            "usr/local/lib/systemd/system/atacama-mail-http.socket",
            0o644,
        ),
        (
            "usr/local/lib/systemd/system/atacama-mail-submission.socket",
            0o644,
        ),
        (
            "usr/local/lib/systemd/system/atacama-mail-submissions.socket",
            0o644,
        ),
        ("usr/local/lib/systemd/system/atacama-mail.service", 0o644),
        ("usr/local/lib/sysusers.d/atacama-mail.conf", 0o644),
        ("usr/local/lib/tmpfiles.d/atacama-mail.conf", 0o644),
        ("usr/local/share/doc/atacama-mail/README.md", 0o644),
        (
            "usr/local/share/doc/atacama-mail/config.toml.example",
            0o644,
        ),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_string(), m))
    .collect();
    assert_eq!(files, expected, "exactly these files, with these modes");
    assert_eq!(mode(&stage.join("etc/atacama/mail")), 0o750);
    assert_eq!(mode(&stage.join("usr/local/lib/systemd/system")), 0o755);
    assert!(
        !record.exists(),
        "a DESTDIR install ran host tools: {}",
        read(&record)
    );

    // Run again over an edited config: the operator's file stays.
    let config = stage.join("etc/atacama/mail/config.toml");
    std::fs::write(&config, "hostname = \"mine.example.org\"\n").expect("edit");
    let run = install(&env, &fakes, &record).success("install.sh again");
    assert!(
        run.stdout
            .contains("keeping the existing /etc/atacama/mail/config.toml"),
        "{run:?}"
    );
    assert_eq!(read(&config), "hostname = \"mine.example.org\"\n");
    assert!(!record.exists(), "{}", read(&record));
}

/// Regular files under `dir` as (path relative to `root`, mode), sorted.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, u32)>) {
    for entry in std::fs::read_dir(dir).expect("read a staged directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            let relative = path.strip_prefix(root).expect("under root");
            out.push((relative.display().to_string(), mode(&path)));
        }
    }
    out.sort();
}

#[test]
fn install_script_points_the_units_at_prefix_and_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (stage, fakes) = (dir.path().join("stage"), dir.path().join("bin"));
    std::fs::create_dir(&fakes).expect("bin/");
    let record = dir.path().join("calls");
    let daemon = Binary::Smol.path();
    let prefix = Path::new("/opt/atacama");
    let env = [
        ("DESTDIR", stage.as_path()),
        ("BIN", daemon.as_path()),
        ("PREFIX", prefix),
    ];
    install(&env, &fakes, &record).success("install.sh with PREFIX");
    let service = read(&stage.join("opt/atacama/lib/systemd/system").join(SERVICE));
    let unit = directives(&service);
    assert!(
        value(&unit, "Service", "ExecStart").starts_with("/opt/atacama/bin/atacama-mail --config"),
        "{service}"
    );
    assert_eq!(
        value(&unit, "Unit", "Documentation"),
        "file:///opt/atacama/share/doc/atacama-mail/README.md"
    );
    assert!(stage.join("opt/atacama/bin/atacama-mail").is_file());
    assert!(stage.join("etc/atacama/mail/config.toml").is_file());

    let missing = dir.path().join("no-such-binary");
    let run = install(
        &[("DESTDIR", stage.as_path()), ("BIN", missing.as_path())],
        &fakes,
        &record,
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("is not an executable file"), "{run:?}");
    let run = install(
        &[
            ("DESTDIR", stage.as_path()),
            ("BIN", daemon.as_path()),
            ("PREFIX", Path::new("relative")),
        ],
        &fakes,
        &record,
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("PREFIX must be an absolute path"),
        "{run:?}"
    );
    assert!(!record.exists(), "{}", read(&record));
}

// --- README.md and CI ---------------------------------------------------------------------------

/// The command in README.md's "Run the tests" block, which `.ci/run` must run as written.
fn readme_test_command(readme: &str) -> String {
    let section = readme
        .split("## Run the tests")
        .nth(1)
        .expect("README.md has a \"## Run the tests\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```sh block in \"Run the tests\"");
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one test command: {lines:?}");
    lines[0].trim().to_string()
}

#[test]
fn ci_runs_the_readme_test_command_and_installs_every_client() {
    let readme = read(&repo().join("README.md"));
    let ci = read(&repo().join(".ci/run"));
    let ci_lines: Vec<&str> = ci.lines().map(str::trim).collect();
    let test_command = readme_test_command(&readme);
    assert_eq!(test_command, "tests/run.sh");
    // CI ends with the README's command, as written, after the checks.
    assert_eq!(
        ci_lines.iter().rev().find(|l| !l.is_empty()),
        Some(&test_command.as_str()),
        ".ci/run does not end with README's test command"
    );
    for command in [
        "cargo fmt --all -- --check",
        "cargo clippy --workspace --all-targets -- -D warnings",
        "cargo test -p atacama-core",
    ] {
        assert!(
            ci_lines.contains(&command),
            ".ci/run does not run `{command}` on a line of its own"
        );
    }
    // The script installs the packages the tests `require` (their failure messages name them
    // too), then runs the whole workspace's tests with any arguments passed on.
    let script = read(&repo().join("tests/run.sh"));
    let script_lines: Vec<&str> = script.lines().map(str::trim).collect();
    let listed: Vec<&str> = script_lines
        .iter()
        .find_map(|l| l.strip_prefix("packages=(")?.strip_suffix(')'))
        .expect("tests/run.sh has a packages=(…) line")
        .split_whitespace()
        .collect();
    assert_eq!(
        listed,
        [
            "swaks",
            "libnet-ssleay-perl",
            "libauthen-sasl-perl",
            "msmtp",
            "curl",
            "systemd",
            "python3",
            "openssl",
            "chromium",
            "postgresql",
        ]
    );
    assert!(
        script.contains("apt-get install -y -q --no-install-recommends \"${missing[@]}\""),
        "tests/run.sh installs the missing packages"
    );
    assert_eq!(
        script_lines.iter().rev().find(|l| !l.is_empty()),
        Some(&"exec cargo test --workspace \"$@\""),
        "tests/run.sh ends by running the workspace's tests"
    );
    for file in [".ci/run", "tests/run.sh"] {
        assert!(
            mode(&repo().join(file)) & 0o111 != 0,
            "{file} is executable"
        );
    }
    // The quick start's first command stays the one that serves on the built-in defaults.
    assert!(
        readme.contains("\ncargo run --release --bin atacama-mail -- serve\n"),
        "README.md lost its quick start command"
    );
}
