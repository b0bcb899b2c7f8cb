//! The OpenStack documents a guest reads about itself — `meta_data.json` and
//! `network_data.json`, in the shapes cloud-init's ConfigDrive and OpenStack datasources take —
//! written once here for both places that serve them: the config drive
//! (`compute::qemu::config_drive`) and the metadata service (`network::metadata`).

use serde_json::{json, Map, Value};

/// `meta_data.json`: identity and SSH keys (`key0`, `key1`, … as the EC2 layout numbers them).
pub fn meta_data(uuid: &str, hostname: &str, ssh_keys: &[String]) -> Value {
    let public_keys: Map<String, Value> =
        ssh_keys.iter().enumerate().map(|(i, k)| (format!("key{i}"), k.clone().into())).collect();
    json!({
        "uuid": uuid,
        "name": hostname,
        "hostname": hostname,
        "public_keys": public_keys,
        "launch_index": 0,
        "availability_zone": "nova",
        "files": [],
        "meta": {},
    })
}

/// `network_data.json`: one physical link per interface, by MAC, each configured by DHCP (which
/// serves the IPAM address).
pub fn network_data<'a>(macs: impl IntoIterator<Item = &'a str>) -> Value {
    let (links, networks): (Vec<Value>, Vec<Value>) = macs
        .into_iter()
        .enumerate()
        .map(|(i, mac)| {
            (
                json!({"id": format!("tap{i}"), "type": "phy", "ethernet_mac_address": mac}),
                json!({"id": format!("net{i}"), "type": "ipv4_dhcp", "link": format!("tap{i}")}),
            )
        })
        .unzip();
    json!({"links": links, "networks": networks, "services": []})
}
