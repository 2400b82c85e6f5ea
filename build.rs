//! The source revision in `apm_auth_proxy_build_info{revision}`: the commit of the
//! checkout when there is one (an image build passes `APM_AUTH_PROXY_REVISION` instead).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=APM_AUTH_PROXY_REVISION");
    if std::env::var_os("APM_AUTH_PROXY_REVISION").is_some() {
        return;
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Looked at again when HEAD moves (a checkout, or a commit on the current branch).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{branch}");
        }
    }
    if let Some(revision) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=APM_AUTH_PROXY_REVISION={revision}");
    }
}
