//! The config drive an instance boots with (see [`config_drive_bytes`]).

use std::io::{Cursor, Write};

use crate::InstanceSpec;

/// Size of the config drive: small (FAT12), with room for a large user-data.
const DRIVE_BYTES: usize = 4 << 20;
/// The volume label cloud-init's ConfigDrive datasource (and ds-identify) look for.
pub const LABEL: &str = "CONFIG-2";
/// The one version directory written: cloud-init reads `latest` when it finds no dated one.
const DIR: &str = "openstack/latest";

/// The config drive: an OpenStack config drive, i.e. a vfat filesystem labelled `CONFIG-2`
/// holding `openstack/latest/{meta_data.json, vendor_data.json, network_data.json (when the
/// instance has NICs), user_data (when given)}`. Written in memory with `fatfs` (no host tool).
/// cloud-init finds it by its label; the tiny image's init mounts `/dev/vdb`.
pub fn config_drive_bytes(spec: &InstanceSpec) -> std::io::Result<Vec<u8>> {
    let mut disk = Cursor::new(vec![0u8; DRIVE_BYTES]);
    let mut label = [b' '; 11];
    label[..LABEL.len()].copy_from_slice(LABEL.as_bytes());
    fatfs::format_volume(&mut disk, fatfs::FormatVolumeOptions::new().volume_label(label))?;
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())?;
        fs.root_dir().create_dir("openstack")?;
        {
            let dir = fs.root_dir().create_dir(DIR)?;
            let add = |name: &str, data: &[u8]| -> std::io::Result<()> {
                let mut f = dir.create_file(name)?;
                f.truncate()?;
                f.write_all(data)?;
                f.flush()
            };
            let meta = crate::openstack::meta_data(&spec.id.to_string(), &spec.name, &spec.ssh_keys);
            add("meta_data.json", meta.to_string().as_bytes())?;
            add("vendor_data.json", b"{}")?;
            if !spec.nics.is_empty() {
                let net = crate::openstack::network_data(spec.nics.iter().map(|n| n.mac.as_str()));
                add("network_data.json", net.to_string().as_bytes())?;
            }
            if let Some(ud) = &spec.user_data {
                add("user_data", ud.as_bytes())?;
            }
        }
        fs.unmount()?;
    }
    Ok(disk.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::qemu::tests::spec;
    use crate::NicSpec;
    use std::io::Read;

    /// The names in `openstack/latest` and a reader for one file.
    fn read_back(bytes: Vec<u8>) -> (String, Vec<String>, impl Fn(&str) -> Option<Vec<u8>>) {
        let fs = fatfs::FileSystem::new(Cursor::new(bytes.clone()), fatfs::FsOptions::new()).unwrap();
        let label = fs.read_volume_label_from_root_dir().unwrap().unwrap_or_default();
        assert_eq!(fs.volume_label(), LABEL, "boot-sector label");
        let mut names: Vec<String> = fs
            .root_dir()
            .open_dir(DIR)
            .unwrap()
            .iter()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "." && n != "..")
            .collect();
        names.sort();
        let read = move |name: &str| {
            let fs = fatfs::FileSystem::new(Cursor::new(bytes.clone()), fatfs::FsOptions::new()).unwrap();
            let mut f = fs.root_dir().open_file(&format!("{DIR}/{name}")).ok()?;
            let mut body = Vec::new();
            f.read_to_end(&mut body).unwrap();
            Some(body)
        };
        (label, names, read)
    }

    fn json(body: Option<Vec<u8>>) -> serde_json::Value {
        serde_json::from_slice(&body.expect("file present")).unwrap()
    }

    #[test]
    fn config_drive_is_vfat_config_2_with_openstack_layout() {
        let bytes = config_drive_bytes(&spec(Some("#!/bin/sh\necho hi\n\u{e9}\0x"))).unwrap();
        assert_eq!(bytes.len(), DRIVE_BYTES);
        let (label, names, read) = read_back(bytes);
        assert_eq!(label, LABEL, "root-directory volume label (what blkid reports)");
        assert_eq!(names, ["meta_data.json", "user_data", "vendor_data.json"]);
        let meta = json(read("meta_data.json"));
        assert_eq!(meta["uuid"], uuid::Uuid::nil().to_string());
        assert_eq!(meta["name"], "web1");
        assert_eq!(meta["hostname"], "web1");
        assert_eq!(meta["launch_index"], 0);
        assert_eq!(meta["availability_zone"], "nova");
        assert_eq!(meta["files"], serde_json::json!([]));
        assert_eq!(meta["public_keys"], serde_json::json!({"key0": "ssh-ed25519 AAAA me@laptop"}));
        assert_eq!(read("user_data").unwrap(), "#!/bin/sh\necho hi\n\u{e9}\0x".as_bytes());
        assert_eq!(json(read("vendor_data.json")), serde_json::json!({}));
    }

    #[test]
    fn config_drive_without_user_data_or_nics_has_neither_file() {
        let (_, names, read) = read_back(config_drive_bytes(&spec(None)).unwrap());
        assert_eq!(names, ["meta_data.json", "vendor_data.json"]);
        assert!(read("user_data").is_none());
        assert!(read("network_data.json").is_none());
    }

    #[test]
    fn config_drive_network_data_has_one_dhcp_link_per_nic() {
        let mut s = spec(None);
        s.nics = vec![NicSpec { mac: "52:54:00:00:00:01".into() }, NicSpec { mac: "52:54:00:00:00:02".into() }];
        let (_, names, read) = read_back(config_drive_bytes(&s).unwrap());
        assert_eq!(names, ["meta_data.json", "network_data.json", "vendor_data.json"]);
        assert_eq!(
            json(read("network_data.json")),
            serde_json::json!({
                "links": [
                    {"id": "tap0", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
                    {"id": "tap1", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:02"},
                ],
                "networks": [
                    {"id": "net0", "type": "ipv4_dhcp", "link": "tap0"},
                    {"id": "net1", "type": "ipv4_dhcp", "link": "tap1"},
                ],
                "services": [],
            })
        );
    }
}
