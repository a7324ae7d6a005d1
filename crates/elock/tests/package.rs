//! The Debian package, installed for real on this machine: `scripts/package --debug` builds it
//! from the debug binary, `dpkg -i` installs it, `systemd-analyze verify` checks the unit, the
//! server is started exactly as the unit's `ExecStart` says with the packaged configuration, the
//! installed CLI takes a lock from it, and `dpkg --purge` removes every file again.
//!
//! It needs root (dpkg), Debian's dpkg and systemd (for systemd-analyze), and port 4142 free on
//! loopback (the packaged configuration's address). scripts/test installs cargo-deb.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const UNIT: &str = "/usr/lib/systemd/system/elock.service";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Purges the package when the test ends, whatever happened.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "elock"])
            .stdout(Stdio::null())
            .status();
    }
}

#[test]
fn the_debian_package_installs_runs_under_its_unit_and_removes_cleanly() {
    assert_eq!(
        run(Command::new("id").arg("-u")).trim(),
        "0",
        "installing a package needs root: run the test command as root"
    );
    let printed = run(Command::new(workspace().join("scripts/package")).arg("--debug"));
    let deb = workspace().join(printed.lines().last().unwrap().trim());
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("elock_") && name.ends_with("_amd64.deb"),
        "{name}"
    );

    // What the package holds.
    let listing = run(Command::new("dpkg").arg("--contents").arg(&deb));
    for path in [
        "./usr/bin/elock",
        "./etc/elock/elock.yaml",
        "./usr/lib/systemd/system/elock.service",
        "./usr/share/man/man1/elock.1.gz",
        "./usr/share/man/man1/elock-serve.1.gz",
        "./usr/share/bash-completion/completions/elock",
        "./usr/share/zsh/vendor-completions/_elock",
        "./usr/share/fish/vendor_completions.d/elock.fish",
    ] {
        assert!(
            listing.contains(path),
            "{path} is not in the package:\n{listing}"
        );
    }
    let conffiles = run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/elock/elock.yaml");

    let _installed = Installed;
    run(Command::new("dpkg").arg("--install").arg(&deb));
    run(Command::new("systemd-analyze").args(["verify", UNIT]));
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for hardening in [
        "DynamicUser=yes",
        "StateDirectory=elock",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "Type=notify",
    ] {
        assert!(
            unit.lines().any(|l| l == hardening),
            "{hardening} missing from the unit"
        );
    }

    // The server, exactly as systemd would start it: ExecStart's command line, the packaged
    // configuration, the state directory systemd would create.
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[0], "/usr/bin/elock");
    let state = Path::new("/var/lib/elock");
    let made_state = !state.exists();
    std::fs::create_dir_all(state).unwrap();
    let mut server = Command::new(argv[0])
        .args(&argv[1..])
        .env("ELOCK_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(
        ready.contains("listening on http://127.0.0.1:4142") && ready.contains("/var/lib/elock"),
        "{ready:?} (is port 4142 free?)"
    );

    // The installed CLI, with its defaults, talks to it.
    let cli = |args: &[&str]| {
        Command::new("/usr/bin/elock")
            .args(args)
            .env_remove("ELOCK_SERVER")
            .output()
            .unwrap()
    };
    let started = Instant::now();
    while !cli(&["health-check"]).status.success() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = cli(&["lock", "package/test", "--owner", "installer"]);
    assert!(
        took.status.success(),
        "{}",
        String::from_utf8_lossy(&took.stderr)
    );
    let listed = cli(&["--output", "json", "list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("installer"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    assert!(Path::new("/usr/share/man/man1/elock.1.gz").exists());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(server.wait().unwrap().success(), "a clean stop exits 0");
    if made_state {
        std::fs::remove_dir_all(state).unwrap();
    }

    // Removed cleanly: the binary, the unit, the configuration (purge), the enablement.
    run(Command::new("dpkg").args(["--purge", "elock"]));
    for gone in [
        "/usr/bin/elock",
        UNIT,
        "/etc/elock/elock.yaml",
        "/etc/elock",
        "/etc/systemd/system/multi-user.target.wants/elock.service",
        "/usr/share/man/man1/elock.1.gz",
    ] {
        assert!(
            !Path::new(gone).exists(),
            "{gone} is still there after purge"
        );
    }
    let status = Command::new("dpkg")
        .args(["--status", "elock"])
        .output()
        .unwrap();
    assert!(!status.status.success(), "dpkg still knows the package");
}
