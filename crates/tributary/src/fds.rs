//! File descriptors: raising the soft limit, and sharing what it allows
//! between HTTP and MQTT connections so that the log, the stores and the
//! process itself always keep the room they need.

/// How many connections each listener may hold.
#[derive(Debug, PartialEq, Eq)]
pub struct ConnectionPlan {
    /// The process's file limit the plan was made for.
    pub file_limit: u64,
    /// HTTP connections (WebSocket, SSE and MQTT over WebSocket included).
    pub http: usize,
    /// MQTT connections over TCP and TLS.
    pub mqtt: usize,
    /// Whether either was lowered from its configured value.
    pub lowered: bool,
}

/// Raises the soft file limit to the hard one; returns the limit in force.
pub fn raise_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read or raise the file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    }
}

/// Fits the configured connection limits under `file_limit` less `reserved`:
/// when both do not fit, each listener gets its share in proportion to what
/// was configured (at least one connection each).
pub fn plan(file_limit: u64, http: usize, mqtt: usize, reserved: usize) -> ConnectionPlan {
    let room = usize::try_from(file_limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserved)
        .max(2);
    let wanted = http.saturating_add(mqtt);
    if wanted <= room {
        return ConnectionPlan {
            file_limit,
            http,
            mqtt,
            lowered: false,
        };
    }
    let http_share = ((room as u128 * http as u128) / wanted.max(1) as u128) as usize;
    let http_share = http_share.clamp(1, room - 1);
    ConnectionPlan {
        file_limit,
        http: http_share,
        mqtt: room - http_share,
        lowered: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_the_reserve_free() {
        assert_eq!(
            plan(1_000_000, 10_000, 100_000, 256),
            ConnectionPlan {
                file_limit: 1_000_000,
                http: 10_000,
                mqtt: 100_000,
                lowered: false
            }
        );
        let p = plan(400, 10_000, 100_000, 256);
        assert!(p.lowered);
        assert_eq!(p.http + p.mqtt, 144);
        assert!(p.http >= 1 && p.mqtt >= 1);
        // A limit below the reserve still leaves one connection each.
        let p = plan(100, 10, 10, 256);
        assert_eq!((p.http, p.mqtt), (1, 1));
    }
}
