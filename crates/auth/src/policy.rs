//! What each role may do: the one place that decides it.

use tributary_store::Role;

/// An action on a tenant's resources that needs permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// List and read devices, their telemetry and live data.
    ReadDevices,
    /// Create, change, delete devices and rotate their credentials.
    WriteDevices,
}

/// Whether `role` may perform `action`.
pub fn allows(role: Role, action: Action) -> bool {
    match action {
        Action::ReadDevices => true,
        Action::WriteDevices => matches!(role, Role::Owner | Role::Admin | Role::Editor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_read_editors_write() {
        for role in [Role::Owner, Role::Admin, Role::Editor, Role::Viewer] {
            assert!(allows(role, Action::ReadDevices));
            assert_eq!(allows(role, Action::WriteDevices), role != Role::Viewer);
        }
    }
}
