//! `[admin]` as typed settings.

use std::net::SocketAddr;

use crate::config::{AdminConfig, Problem, Problems};

#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// `None`: the admin listener is off.
    pub listen: Option<SocketAddr>,
}

impl TryFrom<&AdminConfig> for AdminSettings {
    type Error = Problems;

    fn try_from(a: &AdminConfig) -> Result<AdminSettings, Problems> {
        let mut problems = Problems::default();
        let listen = if a.enabled {
            problems.take(a.listen.parse::<SocketAddr>().map_err(|_| {
                Problem::new(
                    "admin.listen",
                    format!(
                        "{:?} is not an IP:port address (e.g. \"127.0.0.1:8300\")",
                        a.listen
                    ),
                )
            }))
        } else {
            None
        };
        problems.finish(|| AdminSettings { listen })
    }
}
