//! `smtp-load`: drives an SMTP submission server on loopback and reports throughput,
//! latency and failures. See `atacama_tests::load`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use atacama_tests::load::{self, Options, TlsMode, quantile_ms};

const USAGE: &str = "\
Usage: smtp-load --addr 127.0.0.1:2587 [options]

  --addr ADDR            server address (loopback only)
  --implicit             implicit TLS (port 465) instead of STARTTLS
  --server-name NAME     TLS server name (default localhost)
  --ca FILE              trust this PEM certificate (default: accept any; loopback tests only)
  --user NAME            AUTH PLAIN user (default alice)
  --password PW          password (default s3cret)
  --from ADDR            MAIL FROM (default <user>@example.org)
  --to ADDR              RCPT TO (default bob@example.org)
  -c, --connections N    concurrent connections (default 1)
  -m, --messages N       messages per connection (default 1)
  -s, --size BYTES       message size (default 10240)
  --pipelined            send MAIL, RCPT and DATA in one write
  --idle SECONDS         idle mode: hold the connections, then NOOP each
  --connect-concurrency N  connections being set up at once (default 64)
  --server-pid PID       measure this server's PSS around idle mode, and its CPU use
                         (% of one core) while the idle connections are held
  --cpu-of PID           (repeatable) report the cores this process and its descendants
                         used while the messages were sent, and the machine's idle share
  --ready-file PATH      create PATH once every connection has logged in and the
                         messages start (to start other load against busy senders)
  --one-source           every connection from 127.0.0.1 (default: against 127.0.0.1,
                         each from its own address 127.1.1.1, 127.1.1.2, …, as many
                         clients would)
  --threads N            client threads (default 1: beside the server on the same
                         cores, a second one costs more in wake-ups than it adds)
  --deadline SECONDS     bound on the whole run (default 120)
  --io-timeout SECONDS   bound on every read and write (default 30)
  --json                 one JSON line instead of text
";

fn main() -> ExitCode {
    match parse() {
        Ok(None) => emit(USAGE, ExitCode::SUCCESS),
        Ok(Some((options, json))) => match load::run(options.clone()) {
            Ok(report) => {
                let value = report.to_json(&options);
                let text = if json {
                    format!("{value}\n")
                } else {
                    text(&report, &value)
                };
                let code = if report.connections_ok == 0 {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                };
                emit(&text, code)
            }
            Err(e) => {
                eprintln!("smtp-load: error: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("smtp-load: error: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Writes the report; a reader that went away (`| head`) is no failure of the run, which
/// keeps its exit code. (`println!` would panic on it.)
fn emit(text: &str, code: ExitCode) -> ExitCode {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            eprintln!("smtp-load: writing the report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The report in words, a few lines.
fn text(report: &load::Report, v: &serde_json::Value) -> String {
    let mut lat = report.message_latencies.clone();
    lat.sort_unstable();
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "connections ok {} failed {} | {:.1} conn/s | messages ok {} | {:.1} msg/s | wall {:.2} s | client cpu {:.2} s",
        report.connections_ok,
        report.connections_failed,
        v["conn_per_s"].as_f64().unwrap_or_default(),
        report.messages_ok,
        v["msg_per_s"].as_f64().unwrap_or_default(),
        report.wall.as_secs_f64(),
        report.cpu.as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} | login ms p50 {:.1} p99 {:.1}",
        quantile_ms(&lat, 0.5),
        quantile_ms(&lat, 0.9),
        quantile_ms(&lat, 0.99),
        quantile_ms(&lat, 1.0),
        v["login_ms"]["p50"].as_f64().unwrap_or_default(),
        v["login_ms"]["p99"].as_f64().unwrap_or_default(),
    );
    if !report.failures.is_empty() {
        let _ = writeln!(
            out,
            "failures {:?} first errors {:?}",
            report.failures, report.errors
        );
    }
    if report.idle_established > 0 {
        let _ = writeln!(
            out,
            "idle established {} noop ok {} server KiB/conn {} server idle CPU % {}",
            report.idle_established,
            report.idle_noop_ok,
            v["server_kib_per_idle_conn"],
            v["server_idle_cpu_pct"]
        );
    }
    if report.deadline_hit {
        out.push_str("deadline hit: the run was cut short\n");
    }
    out
}

fn parse() -> Result<Option<(Options, bool)>, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut o = Options {
        addr: "127.0.0.1:2587".parse().map_err(|e| format!("{e}"))?,
        tls: TlsMode::StartTls,
        server_name: "localhost".into(),
        ca: None,
        user: "alice".into(),
        password: "s3cret".into(),
        from: String::new(),
        to: "bob@example.org".into(),
        connections: 1,
        messages: 1,
        size: 10_240,
        pipelined: false,
        idle: None,
        connect_concurrency: 64,
        deadline: Duration::from_secs(120),
        io_timeout: Duration::from_secs(30),
        threads: 1,
        server_pid: None,
        cpu_of: Vec::new(),
        ready_file: None,
        spread_sources: true,
    };
    let mut json = false;
    let text = |p: &mut lexopt::Parser| -> Result<String, String> {
        p.value()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|_| "not UTF-8".to_string())
    };
    let number = |p: &mut lexopt::Parser| -> Result<u64, String> {
        let v = p.value().map_err(|e| e.to_string())?;
        v.parse::<u64>().map_err(|e| e.to_string())
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("addr") => o.addr = text(&mut p)?.parse().map_err(|e| format!("--addr: {e}"))?,
            Long("implicit") => o.tls = TlsMode::Implicit,
            Long("server-name") => o.server_name = text(&mut p)?,
            Long("ca") => o.ca = Some(text(&mut p)?.into()),
            Long("user") => o.user = text(&mut p)?,
            Long("password") => o.password = text(&mut p)?,
            Long("from") => o.from = text(&mut p)?,
            Long("to") => o.to = text(&mut p)?,
            Short('c') | Long("connections") => o.connections = number(&mut p)? as usize,
            Short('m') | Long("messages") => o.messages = number(&mut p)? as usize,
            Short('s') | Long("size") => o.size = number(&mut p)? as usize,
            Long("pipelined") => o.pipelined = true,
            Long("idle") => o.idle = Some(Duration::from_secs(number(&mut p)?)),
            Long("connect-concurrency") => o.connect_concurrency = number(&mut p)? as usize,
            Long("server-pid") => o.server_pid = Some(number(&mut p)? as u32),
            Long("ready-file") => o.ready_file = Some(text(&mut p)?.into()),
            Long("cpu-of") => o.cpu_of.push(number(&mut p)? as u32),
            Long("threads") => o.threads = number(&mut p)? as usize,
            Long("one-source") => o.spread_sources = false,
            Long("deadline") => o.deadline = Duration::from_secs(number(&mut p)?),
            Long("io-timeout") => o.io_timeout = Duration::from_secs(number(&mut p)?),
            Long("json") => json = true,
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if o.from.is_empty() {
        o.from = if o.user.contains('@') {
            o.user.clone()
        } else {
            format!("{}@example.org", o.user)
        };
    }
    Ok(Some((o, json)))
}
