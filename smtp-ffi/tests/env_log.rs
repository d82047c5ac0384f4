//! `SMTPX_LOG` for programs without a log callback: the library's records and the wire
//! trace go to standard error. The variable is read once per process, so the test runs
//! itself again as a child process with the variable set and reads the child's stderr.

use std::ffi::CString;
use std::process::{Command, Stdio};
use std::ptr;
use std::time::{Duration, Instant};

use smtpx::client::{
    smtpx_client, smtpx_client_connect, smtpx_client_free, smtpx_client_options_free,
    smtpx_client_options_new, smtpx_client_options_set_tls_mode, smtpx_client_quit, smtpx_tls_mode,
};
use smtpx::config::{smtpx_server_config_free, smtpx_server_config_new};
use smtpx::server::{
    smtpx_handler, smtpx_server, smtpx_server_free, smtpx_server_local_port, smtpx_server_start,
};
use smtpx::smtpx_result;

/// Set in the child: run the conversation instead of spawning.
const CHILD: &str = "SMTPX_ENV_LOG_TEST_CHILD";

/// A server and a client through the C functions, without log callbacks.
fn converse() {
    let config = smtpx_server_config_new();
    let options = smtpx_client_options_new();
    assert!(!config.is_null() && !options.is_null());
    // SAFETY: a zeroed table is the documented "all defaults" handler.
    let handler: smtpx_handler = unsafe { std::mem::zeroed() };
    let mut server: *mut smtpx_server = ptr::null_mut();
    assert_eq!(
        smtpx_server_start(config, &handler, &mut server),
        smtpx_result::Ok
    );
    assert_eq!(
        smtpx_client_options_set_tls_mode(options, smtpx_tls_mode::None as u32),
        smtpx_result::Ok
    );
    let host = CString::new("127.0.0.1").unwrap();
    let mut client: *mut smtpx_client = ptr::null_mut();
    let port = smtpx_server_local_port(server);
    assert_eq!(
        smtpx_client_connect(host.as_ptr(), port, ptr::null(), options, &mut client),
        smtpx_result::Ok
    );
    assert_eq!(smtpx_client_quit(client), smtpx_result::Ok);
    smtpx_client_free(client);
    smtpx_server_free(server);
    smtpx_client_options_free(options);
    smtpx_server_config_free(config);
}

/// Runs this test binary's `test_name` as a child with `SMTPX_LOG=level`, within a
/// minute, and gives its standard error.
fn child_stderr(test_name: &str, level: &str) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("SMTPX_LOG", level)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the child did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().unwrap();
    assert!(status.success(), "the child failed: {stderr}");
    stderr
}

#[test]
fn smtpx_log_debug_writes_records_and_trace_to_stderr() {
    if std::env::var_os(CHILD).is_some() {
        converse();
        return;
    }
    let stderr = child_stderr(
        "smtpx_log_debug_writes_records_and_trace_to_stderr",
        "debug",
    );
    // Both sides' trace, and the library's own records.
    for side in ["client", "server"] {
        let start = format!("smtpx DEBUG smtpx::wire: {side} conn=");
        for end in [
            "S: 220 localhost ESMTP smtpx",
            "C: EHLO localhost",
            "S: 250 DSN",
            "C: QUIT",
        ] {
            assert!(
                stderr
                    .lines()
                    .any(|l| l.starts_with(&start) && l.ends_with(end)),
                "no {side} line {end:?} in {stderr}"
            );
        }
    }
    assert!(stderr.contains("smtpx INFO "), "{stderr}");
    assert!(stderr.contains("smtpx DEBUG smtp_core::"), "{stderr}");
}

#[test]
fn smtpx_log_info_writes_records_without_trace() {
    if std::env::var_os(CHILD).is_some() {
        converse();
        return;
    }
    let stderr = child_stderr("smtpx_log_info_writes_records_without_trace", "info");
    assert!(stderr.contains("smtpx INFO "), "{stderr}");
    assert!(!stderr.contains("smtpx::wire"), "{stderr}");
    assert!(!stderr.contains("DEBUG"), "{stderr}");
}

#[test]
fn without_smtpx_log_nothing_is_written() {
    if std::env::var_os(CHILD).is_some() {
        converse();
        return;
    }
    let stderr = child_stderr("without_smtpx_log_nothing_is_written", "");
    assert!(!stderr.contains("smtpx "), "{stderr}");
}
