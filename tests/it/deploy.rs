//! The container's command line, run on the host: `docker/proxy.toml` with its files laid
//! out as the image's mounts are (read-only), started with the Dockerfile's own ENTRYPOINT
//! and CMD, serving agents and answering its health command; and every Kubernetes overlay's
//! `proxy.toml` passes `check`. Paths under /etc/apm-auth-proxy move to a temporary directory
//! and listen addresses to loopback ports; nothing else changes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;

const ETC: &str = "/etc/apm-auth-proxy";
const TOKEN: &str = "container-token-6a0d5e";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The JSON array of a Dockerfile instruction in its final stage (`CMD`, `ENTRYPOINT`).
fn exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let final_stage = &dockerfile[dockerfile.rfind("\nFROM ").unwrap()..];
    let line = final_stage
        .lines()
        .find(|l| l.starts_with(&format!("{instruction} [")))
        .unwrap_or_else(|| panic!("no {instruction} in exec form"));
    serde_json::from_str(&line[instruction.len() + 1..]).unwrap()
}

const MOUNTED: [&str; 3] = ["tls", "secrets", "keys"];

/// The mounts of docker/compose.yaml and the Kubernetes Deployment in a temporary directory,
/// read-only; made writable again when dropped, so the directory can be removed.
struct Mounts(tempfile::TempDir);

impl Mounts {
    fn lay_out(pki: &Pki) -> Mounts {
        let mounts = Mounts(tempfile::tempdir().unwrap());
        let root = mounts.path();
        for dir in MOUNTED {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::copy(&pki.cert, root.join("tls/tls.crt")).unwrap();
        std::fs::copy(&pki.key, root.join("tls/tls.key")).unwrap();
        std::fs::write(root.join("secrets/secret-token"), format!("{TOKEN}\n")).unwrap();
        register_secret(TOKEN);
        std::fs::write(root.join("keys/keys.toml"), "").unwrap();
        mounts.set_modes(0o444, 0o555).unwrap();
        mounts
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn set_modes(&self, file: u32, dir: u32) -> std::io::Result<()> {
        use std::fs::{set_permissions, Permissions};
        for d in MOUNTED {
            let d = self.path().join(d);
            set_permissions(&d, Permissions::from_mode(0o755))?;
            for entry in std::fs::read_dir(&d)? {
                set_permissions(entry?.path(), Permissions::from_mode(file))?;
            }
            set_permissions(&d, Permissions::from_mode(dir))?;
        }
        Ok(())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        // Best effort: a failure here leaves a directory behind, never a second panic.
        let _ = self.set_modes(0o644, 0o755);
    }
}

/// `text` with the container's paths under `root`, its listeners on the given loopback
/// ports and its upstream at `upstream`.
fn relocate(text: &str, root: &Path, port: u16, admin: u16, upstream: &str) -> String {
    let relocated = text
        .replace(ETC, root.to_str().unwrap())
        .replace("0.0.0.0:8200", &format!("127.0.0.1:{port}"))
        .replace("0.0.0.0:8300", &format!("127.0.0.1:{admin}"));
    let mut config: toml::Table = relocated.parse().unwrap();
    // A DNS-discovered pool is checked as written (resolved only when serving).
    if config["upstream"].get("discovery").is_none() {
        config["upstream"]["url"] = toml::Value::String(upstream.to_string());
    }
    toml::to_string(&config).unwrap()
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            all.push(path);
        }
    }
    all.sort();
    all
}

#[test]
fn the_image_command_serves_with_the_container_config_and_reports_healthy() {
    let pki = pki();
    let upstream = Upstream::start();
    let mounts = Mounts::lay_out(&pki);
    let before = files_under(mounts.path());
    let (port, admin) = (free_port(), free_port());
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("proxy.toml");
    let shipped = std::fs::read_to_string(repo("docker/proxy.toml")).unwrap();
    std::fs::write(
        &config,
        relocate(&shipped, mounts.path(), port, admin, &upstream.url()),
    )
    .unwrap();

    let dockerfile = std::fs::read_to_string(repo("docker/Dockerfile")).unwrap();
    let entrypoint = exec_form(&dockerfile, "ENTRYPOINT");
    assert_eq!(entrypoint, ["/usr/local/bin/apm-auth-proxy"]);
    let cmd: Vec<String> = exec_form(&dockerfile, "CMD")
        .into_iter()
        .map(|a| a.replace(&format!("{ETC}/proxy.toml"), config.to_str().unwrap()))
        .collect();
    assert_eq!(cmd[0], "run", "{cmd:?}");
    let log = config_dir.path().join("proxy.log");
    let mut child = command_tied_to_test(BIN)
        .args(&cmd)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let healthcheck: Vec<String> = {
        let line = dockerfile
            .lines()
            .find(|l| l.contains("CMD [\"/usr/local/bin/apm-auth-proxy\", \"health\""))
            .unwrap();
        let json = &line[line.find('[').unwrap()..];
        serde_json::from_str::<Vec<String>>(json)
            .unwrap()
            .into_iter()
            .skip(1)
            .map(|a| a.replace(&format!("{ETC}/proxy.toml"), config.to_str().unwrap()))
            .collect()
    };
    eventually_blocking("the image's HEALTHCHECK command to pass", || {
        let args: Vec<&str> = healthcheck.iter().map(String::as_str).collect();
        run_cli(&args).0 == 0
    });
    let answer = rt().block_on(async {
        let client = client_for(&pki.ca_pem, true, None);
        let auth = format!("Bearer {TOKEN}");
        post(
            &client,
            &format!("https://localhost:{port}/intake/v2/events"),
            &[("Authorization", &auth)],
            "{}\n",
        )
        .await
    });
    assert_eq!(answer.status, 202);
    assert_eq!(upstream.requests().len(), 1);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "ECS JSON logs: {text}"
    );
    assert_no_secret_in(&text, "the container's log");
    assert_eq!(
        files_under(mounts.path()),
        before,
        "nothing written under the read-only mounts"
    );
}

#[test]
fn every_kubernetes_overlay_config_passes_check() {
    let pki = pki();
    let mounts = Mounts::lay_out(&pki);
    let overlays = repo("docker/kubernetes/overlays");
    let mut checked = 0;
    for entry in std::fs::read_dir(&overlays).unwrap() {
        let toml_path = entry.unwrap().path().join("proxy.toml");
        if !toml_path.exists() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("proxy.toml");
        let text = std::fs::read_to_string(&toml_path).unwrap();
        std::fs::write(
            &config,
            relocate(
                &text,
                mounts.path(),
                free_port(),
                free_port(),
                "http://127.0.0.1:9",
            ),
        )
        .unwrap();
        let (code, out, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {out}{err}", toml_path.display());
        assert!(out.contains("configuration OK"), "{out}");
        checked += 1;
    }
    assert!(checked >= 2, "overlays with a proxy.toml: {checked}");
}
