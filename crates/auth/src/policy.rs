//! What each role may do: the one place that decides it. `docs/roles.md`
//! shows the same table; a test keeps the two in agreement.

use tributary_store::Role;

/// An action on a tenant's resources that needs permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read devices, groups, profiles, attributes, telemetry, live data.
    Read,
    /// Create, change and delete devices, credentials, groups, profiles, attributes.
    Write,
    /// Create, list and revoke API keys.
    ManageApiKeys,
    /// Invite users, list them, change roles below owner, remove members.
    ManageMembers,
    /// Read the audit log.
    ReadAudit,
    /// Grant or take away the owner role.
    ManageOwners,
    /// Change the tenant's settings (name, data retention).
    ConfigureTenant,
    /// Delete the tenant and all its data.
    DeleteTenant,
}

impl Action {
    /// Every action, in the order of the documented table.
    pub const ALL: [Action; 8] = [
        Action::Read,
        Action::Write,
        Action::ManageApiKeys,
        Action::ManageMembers,
        Action::ReadAudit,
        Action::ManageOwners,
        Action::ConfigureTenant,
        Action::DeleteTenant,
    ];

    /// The action's name in `docs/roles.md` and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "read resources",
            Action::Write => "write resources",
            Action::ManageApiKeys => "manage API keys",
            Action::ManageMembers => "manage members",
            Action::ReadAudit => "read the audit log",
            Action::ManageOwners => "manage owners",
            Action::ConfigureTenant => "configure the tenant",
            Action::DeleteTenant => "delete the tenant",
        }
    }
}

/// Whether `role` may perform `action`.
pub fn allows(role: Role, action: Action) -> bool {
    use Role::*;
    match action {
        Action::Read => true,
        Action::Write => matches!(role, Owner | Admin | Editor),
        Action::ManageApiKeys
        | Action::ManageMembers
        | Action::ReadAudit
        | Action::ConfigureTenant => {
            matches!(role, Owner | Admin)
        }
        Action::ManageOwners | Action::DeleteTenant => role == Owner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in docs/roles.md says exactly what `allows` does.
    #[test]
    fn docs_table_matches_the_code() {
        let doc = include_str!("../../../docs/roles.md");
        let roles = [Role::Owner, Role::Admin, Role::Editor, Role::Viewer];
        for action in Action::ALL {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| {} |", action.name())))
                .unwrap_or_else(|| panic!("docs/roles.md has no row for {:?}", action.name()));
            let cells: Vec<&str> = row
                .split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            assert_eq!(cells.len(), 5, "{row}");
            for (role, cell) in roles.iter().zip(&cells[1..]) {
                let documented = match *cell {
                    "yes" => true,
                    "no" => false,
                    other => panic!("cell {other:?} in {row}"),
                };
                assert_eq!(
                    documented,
                    allows(*role, action),
                    "{role} / {}",
                    action.name()
                );
            }
        }
    }
}
