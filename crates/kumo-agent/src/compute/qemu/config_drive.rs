//! The config drive an instance boots with (see [`config_drive_bytes`]).

use crate::InstanceSpec;

/// The config drive: a raw disk whose content is a tar archive of `meta-data.json` and, when
/// given, `user-data`. The tiny image's init extracts it with `tar -xf /dev/vdb`.
pub fn config_drive_bytes(spec: &InstanceSpec) -> std::io::Result<Vec<u8>> {
    let meta = serde_json::json!({
        "instance_id": spec.id.to_string(),
        "name": spec.name,
        "hostname": spec.name,
    });
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data)
    };
    add("meta-data.json", meta.to_string().as_bytes())?;
    if let Some(ud) = &spec.user_data {
        add("user-data", ud.as_bytes())?;
    }
    let mut bytes = builder.into_inner()?;
    // Whole sectors, and some zero padding so the guest sees a sane small disk.
    let len = bytes.len().div_ceil(64 * 1024) * 64 * 1024;
    bytes.resize(len, 0);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::qemu::tests::spec;
    use std::io::Read;

    #[test]
    fn config_drive_is_a_tar_with_user_data() {
        let bytes = config_drive_bytes(&spec(Some("echo hi"))).unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            if name == "user-data" {
                assert_eq!(body, "echo hi");
            }
            names.push(name);
        }
        assert_eq!(names, ["meta-data.json", "user-data"]);
    }
}
