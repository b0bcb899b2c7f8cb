//! The one "live row by name or id" lookup every resource's `get` goes through.
//!
//! A resource names its table ([`Lookup::FROM`], alias [`Lookup::ALIAS`]), the columns its row
//! mapper reads ([`Lookup::COLS`], [`Lookup::from_row`]) and where its names are unique
//! ([`Lookup::SCOPE`]); [`get`] builds the query. Only live rows (`time_deleted IS NULL`) are found.

use crate::{Conn, Result};
use kumo_types::{NameOrId, ProjectId, VpcId};
use sqlx::any::AnyRow;

/// Where a resource's names are unique, and so which rows a lookup sees.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope {
    /// Across the whole table (projects, users, hosts).
    Global,
    /// Within a parent, named by this column (`project_id`, `vpc_id`): only the parent's rows.
    Parent(&'static str),
    /// Within a parent, plus the public rows (the column is NULL), the parent's own first: a
    /// project's own image shadows a public one of the same name. No parent: public rows only.
    ParentOrPublic(&'static str),
}

/// A resource found by [`get`].
pub(crate) trait Lookup: Sized {
    /// The columns [`Lookup::from_row`] reads, in its order.
    const COLS: &'static str;
    /// `FROM table alias [JOIN …]`.
    const FROM: &'static str;
    /// The alias of the resource's table in [`Lookup::FROM`].
    const ALIAS: &'static str;
    const SCOPE: Scope;
    /// What names the scope: `()` for [`Scope::Global`], the parent's id otherwise.
    type Parent: ScopeKey;
    fn from_row(r: &AnyRow) -> Result<Self>;
}

/// Implements [`Lookup`] for a record type in one line: the type, its columns, its `FROM …`, its
/// table's alias, its scope, the scope's parent type and its row mapper:
/// `impl_lookup!(SshKeyView: COLS FROM "k", Parent("project_id") => ProjectId, from_row);`
macro_rules! impl_lookup {
    ($t:ty: $cols:tt $from:tt $alias:literal, $scope:ident $(($col:literal))? => $parent:ty, $row:path) => {
        impl $crate::lookup::Lookup for $t {
            const COLS: &'static str = $cols;
            const FROM: &'static str = $from;
            const ALIAS: &'static str = $alias;
            const SCOPE: $crate::lookup::Scope = $crate::lookup::Scope::$scope $(($col))?;
            type Parent = $parent;
            fn from_row(r: &sqlx::any::AnyRow) -> $crate::Result<Self> {
                $row(r)
            }
        }
    };
}
pub(crate) use impl_lookup;

/// The bound value of a scope's parent.
pub(crate) trait ScopeKey {
    fn key(&self) -> String;
}

impl ScopeKey for () {
    fn key(&self) -> String {
        String::new()
    }
}

impl ScopeKey for ProjectId {
    fn key(&self) -> String {
        self.to_string()
    }
}

impl ScopeKey for VpcId {
    fn key(&self) -> String {
        self.to_string()
    }
}

/// No project: no row's project matches (public rows only).
impl ScopeKey for Option<ProjectId> {
    fn key(&self) -> String {
        self.map(|p| p.to_string()).unwrap_or_default()
    }
}

/// `alias.id = $n` or `alias.name = $n`, and the value to bind as `$n`.
pub(crate) fn name_or_id(alias: &str, n: usize, sel: &NameOrId) -> (String, String) {
    match sel {
        NameOrId::Id(id) => (format!("{alias}.id = ${n}"), id.to_string()),
        NameOrId::Name(name) => (format!("{alias}.name = ${n}"), name.to_string()),
    }
}

/// The query of [`get`] and its binds (for a read path of its own, like `crate::fast`).
pub(crate) fn get_sql<T: Lookup>(parent: &T::Parent, sel: &NameOrId) -> (String, Vec<String>) {
    let (cols, from, a) = (T::COLS, T::FROM, T::ALIAS);
    match T::SCOPE {
        Scope::Global => {
            let (pred, val) = name_or_id(a, 1, sel);
            (format!("SELECT {cols} {from} WHERE {pred} AND {a}.time_deleted IS NULL"), vec![val])
        }
        Scope::Parent(col) => {
            let (pred, val) = name_or_id(a, 2, sel);
            let sql = format!("SELECT {cols} {from} WHERE {a}.{col} = $1 AND {pred} AND {a}.time_deleted IS NULL");
            (sql, vec![parent.key(), val])
        }
        Scope::ParentOrPublic(col) => {
            let (pred, val) = name_or_id(a, 2, sel);
            let sql = format!(
                "SELECT {cols} {from} WHERE {pred} AND {a}.time_deleted IS NULL \
                 AND ({a}.{col} IS NULL OR {a}.{col} = $1) ORDER BY {a}.{col} IS NULL LIMIT 1"
            );
            (sql, vec![parent.key(), val])
        }
    }
}

/// The live row `sel` names within `parent`'s scope.
pub(crate) async fn get<T: Lookup>(conn: &mut Conn, parent: T::Parent, sel: &NameOrId) -> Result<Option<T>> {
    let (sql, binds) = get_sql::<T>(&parent, sel);
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    let row = q.fetch_optional(&mut *conn).await?;
    row.as_ref().map(T::from_row).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kumo_types::Name;

    struct Global;
    struct InProject;
    struct Image;

    fn unused<T>(_: &AnyRow) -> Result<T> {
        unreachable!("no row is read")
    }
    impl_lookup!(Global: "x.id" "FROM xs x" "x", Global => (), unused);
    impl_lookup!(InProject: "x.id" "FROM xs x" "x", Parent("project_id") => ProjectId, unused);
    impl_lookup!(Image: "x.id" "FROM xs x" "x", ParentOrPublic("project_id") => Option<ProjectId>, unused);

    /// The SQL text is the one each resource's own `get` had before they were folded here.
    #[test]
    fn queries_keep_their_scope() {
        let id = uuid::Uuid::nil();
        let by_name = NameOrId::Name(Name::parse("web").unwrap());
        let by_id = NameOrId::Id(id);
        let p = ProjectId::from(id);
        assert_eq!(
            get_sql::<Global>(&(), &by_name),
            ("SELECT x.id FROM xs x WHERE x.name = $1 AND x.time_deleted IS NULL".to_string(), vec!["web".to_string()])
        );
        assert_eq!(
            get_sql::<InProject>(&p, &by_id),
            (
                "SELECT x.id FROM xs x WHERE x.project_id = $1 AND x.id = $2 AND x.time_deleted IS NULL".to_string(),
                vec![p.to_string(), id.to_string()]
            )
        );
        assert_eq!(
            get_sql::<Image>(&None, &by_name),
            (
                "SELECT x.id FROM xs x WHERE x.name = $2 AND x.time_deleted IS NULL \
                 AND (x.project_id IS NULL OR x.project_id = $1) ORDER BY x.project_id IS NULL LIMIT 1"
                    .to_string(),
                vec![String::new(), "web".to_string()]
            )
        );
    }
}
