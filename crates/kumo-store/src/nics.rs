//! Network interfaces and IPAM: an instance's interface gets the lowest free address of its subnet
//! in the transaction that creates the instance, under the subnet's row lock; the partial unique
//! index on (subnet, address) among live interfaces backs that up. Deleting the instance releases
//! the address (soft delete of the interface).

use crate::vpcs::SubnetRecord;
use crate::{map_unique, new_id, now, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::network::mac_for;
use kumo_types::{HostId, InstanceId, InstanceState, NetworkInterfaceView, NicId, SubnetId, VpcId};
use sqlx::Row;
use std::net::Ipv4Addr;

/// Why an interface could not be made.
#[derive(Debug)]
pub enum AllocError {
    /// Every assignable address of the subnet is taken.
    Exhausted,
    Store(StoreError),
}

impl From<StoreError> for AllocError {
    fn from(e: StoreError) -> Self {
        AllocError::Store(e)
    }
}

impl From<sqlx::Error> for AllocError {
    fn from(e: sqlx::Error) -> Self {
        AllocError::Store(e.into())
    }
}

/// Allocates an address in `subnet` and inserts the interface of `instance_id`.
pub async fn allocate(
    conn: &mut Conn,
    instance_id: InstanceId,
    subnet: &SubnetRecord,
) -> std::result::Result<NetworkInterfaceView, AllocError> {
    crate::vpcs::lock_subnet(conn, subnet.view.id).await?;
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT ipv4 FROM network_interfaces WHERE subnet_id = $1 AND time_deleted IS NULL")
            .bind(subnet.view.id.to_string())
            .fetch_all(&mut *conn)
            .await?;
    let mut used: Vec<Ipv4Addr> = rows.iter().filter_map(|s| s.parse().ok()).collect();
    used.sort();
    let ip = subnet.plan.first_free(&used).ok_or(AllocError::Exhausted)?;
    let id = new_id();
    let mac = mac_for(id);
    sqlx::query(
        "INSERT INTO network_interfaces (id, instance_id, subnet_id, mac, ipv4, time_created) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.to_string())
    .bind(instance_id.to_string())
    .bind(subnet.view.id.to_string())
    .bind(&mac)
    .bind(ip.to_string())
    .bind(ts(now()))
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    Ok(NetworkInterfaceView {
        mac,
        ipv4: ip.to_string(),
        vpc: subnet.view.vpc.clone(),
        subnet: subnet.view.name.clone(),
    })
}

/// Releases the instance's addresses (its interfaces are gone with it).
pub async fn release_for_instance(conn: &mut Conn, instance_id: InstanceId) -> Result<()> {
    sqlx::query("UPDATE network_interfaces SET time_deleted = $1 WHERE instance_id = $2 AND time_deleted IS NULL")
        .bind(ts(now()))
        .bind(instance_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The interfaces and public IP of each of `ids` (for instance views), in one query each.
pub async fn for_instances(
    conn: &mut Conn,
    ids: &[InstanceId],
) -> Result<std::collections::HashMap<InstanceId, (Vec<NetworkInterfaceView>, Option<String>)>> {
    let mut out: std::collections::HashMap<InstanceId, (Vec<NetworkInterfaceView>, Option<String>)> =
        Default::default();
    if ids.is_empty() {
        return Ok(out);
    }
    let list = ids.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(",");
    // Ids are UUIDs we formatted ourselves: safe to inline.
    let sql = format!(
        "SELECT n.instance_id, n.mac, n.ipv4, v.name, s.name FROM network_interfaces n \
         JOIN vpc_subnets s ON s.id = n.subnet_id JOIN vpcs v ON v.id = s.vpc_id \
         WHERE n.instance_id IN ({list}) AND n.time_deleted IS NULL ORDER BY n.id"
    );
    for r in sqlx::query(&sql).fetch_all(&mut *conn).await? {
        let id = parse_uuid(&r.try_get::<String, _>(0)?)?;
        out.entry(id).or_default().0.push(NetworkInterfaceView {
            mac: r.try_get(1)?,
            ipv4: r.try_get(2)?,
            vpc: r.try_get(3)?,
            subnet: r.try_get(4)?,
        });
    }
    let sql =
        format!("SELECT instance_id, ip FROM floating_ips WHERE instance_id IN ({list}) AND time_deleted IS NULL");
    for r in sqlx::query(&sql).fetch_all(&mut *conn).await? {
        let id = parse_uuid(&r.try_get::<String, _>(0)?)?;
        out.entry(id).or_default().1 = Some(r.try_get(1)?);
    }
    Ok(out)
}

/// Fills `network_interfaces` and `public_ip` of instance views.
pub async fn fill_views(conn: &mut Conn, views: &mut [&mut kumo_types::InstanceView]) -> Result<()> {
    let ids: Vec<InstanceId> = views.iter().map(|v| v.id).collect();
    let mut map = for_instances(conn, &ids).await?;
    for v in views.iter_mut() {
        if let Some((nics, ip)) = map.remove(&v.id) {
            v.network_interfaces = nics;
            v.public_ip = ip;
        }
    }
    Ok(())
}

/// The typed read path's query of live interfaces whose `instance_id` matches `pred` (e.g.
/// `= $1`), decoded by [`fast_interface`].
pub(crate) fn fast_interfaces_sql(pred: &str) -> String {
    format!(
        "SELECT n.instance_id, n.mac, n.ipv4, v.name, s.name FROM network_interfaces n \
         JOIN vpc_subnets s ON s.id = n.subnet_id JOIN vpcs v ON v.id = s.vpc_id \
         WHERE n.instance_id {pred} AND n.time_deleted IS NULL ORDER BY n.id"
    )
}

pub(crate) fn fast_interface(r: &dyn crate::fast::Cols) -> Result<(InstanceId, NetworkInterfaceView)> {
    Ok((
        parse_uuid(&r.text(0)?)?,
        NetworkInterfaceView { mac: r.text(1)?, ipv4: r.text(2)?, vpc: r.text(3)?, subnet: r.text(4)? },
    ))
}

/// Puts each of `rows` (from [`fast_interfaces_sql`]) into its instance's view.
pub(crate) fn attach_interfaces(
    views: &mut [&mut kumo_types::InstanceView],
    rows: Vec<(InstanceId, NetworkInterfaceView)>,
) {
    if rows.is_empty() {
        return;
    }
    let mut by_id: std::collections::HashMap<InstanceId, Vec<NetworkInterfaceView>> = Default::default();
    for (id, nic) in rows {
        by_id.entry(id).or_default().push(nic);
    }
    for v in views.iter_mut() {
        if let Some(nics) = by_id.remove(&v.id) {
            v.network_interfaces = nics;
        }
    }
}

/// Fills the views' `network_interfaces` on the typed read path (their `public_ip` comes with the
/// instance row, see `instances::fast_list`).
pub(crate) async fn fast_fill_interfaces(
    reader: &crate::fast::Reader,
    views: &mut [&mut kumo_types::InstanceView],
) -> Result<()> {
    if views.is_empty() {
        return Ok(());
    }
    // Ids are UUIDs we formatted ourselves, safe to inline.
    let list = views.iter().map(|v| format!("'{}'", v.id)).collect::<Vec<_>>().join(",");
    let rows = reader.all(&fast_interfaces_sql(&format!("IN ({list})")), &[], fast_interface).await?;
    attach_interfaces(views, rows);
    Ok(())
}

/// One live interface with everything the host data plane and metadata service need.
#[derive(Debug, Clone)]
pub struct HostInterface {
    pub id: NicId,
    pub instance_id: InstanceId,
    pub instance_name: String,
    pub host_id: HostId,
    pub instance_state: InstanceState,
    pub user_data: Option<String>,
    pub subnet_id: SubnetId,
    pub vpc_id: VpcId,
    pub vni: i64,
    pub ct_zone: i64,
    pub subnet_cidr: String,
    pub mac: String,
    pub ipv4: String,
    pub public_ip: Option<String>,
}

/// Every live interface of instances placed on `host_id`.
pub async fn on_host(conn: &mut Conn, host_id: HostId) -> Result<Vec<HostInterface>> {
    let rows = sqlx::query(
        "SELECT n.id, i.id, i.name, i.host_id, i.state, i.user_data, s.id, v.id, v.vni, s.ipv4_cidr, n.mac, n.ipv4, \
         (SELECT f.ip FROM floating_ips f WHERE f.instance_id = i.id AND f.time_deleted IS NULL), v.ct_zone \
         FROM network_interfaces n JOIN instances i ON i.id = n.instance_id \
         JOIN vpc_subnets s ON s.id = n.subnet_id JOIN vpcs v ON v.id = s.vpc_id \
         WHERE i.host_id = $1 AND n.time_deleted IS NULL AND i.time_deleted IS NULL ORDER BY n.id",
    )
    .bind(host_id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HostInterface {
                id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                instance_id: parse_uuid(&r.try_get::<String, _>(1)?)?,
                instance_name: r.try_get(2)?,
                host_id: parse_uuid(&r.try_get::<String, _>(3)?)?,
                instance_state: {
                    let s: String = r.try_get(4)?;
                    InstanceState::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("instance state '{s}'")))?
                },
                user_data: r.try_get(5)?,
                subnet_id: parse_uuid(&r.try_get::<String, _>(6)?)?,
                vpc_id: parse_uuid(&r.try_get::<String, _>(7)?)?,
                vni: r.try_get(8)?,
                subnet_cidr: r.try_get(9)?,
                mac: r.try_get(10)?,
                ipv4: r.try_get(11)?,
                public_ip: r.try_get(12)?,
                ct_zone: r.try_get(13)?,
            })
        })
        .collect()
}

/// The SSH public keys an instance was created with.
pub async fn instance_ssh_keys(conn: &mut Conn, instance_id: InstanceId) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT public_key FROM instance_ssh_keys WHERE instance_id = $1 ORDER BY position")
        .bind(instance_id.to_string())
        .fetch_all(&mut *conn)
        .await?)
}

pub async fn set_instance_ssh_keys(conn: &mut Conn, instance_id: InstanceId, keys: &[String]) -> Result<()> {
    for (i, k) in keys.iter().enumerate() {
        sqlx::query("INSERT INTO instance_ssh_keys (instance_id, position, public_key) VALUES ($1, $2, $3)")
            .bind(instance_id.to_string())
            .bind(i as i64)
            .bind(k)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
