//! The image `make image` builds (hack/image.sh: a static release binary packed with crane
//! into an OCI layout tarball, `target/image/shoal-oci.tar`): unpacked here, its binary runs
//! from the unpacked root (`shoal --version`, `shoal crd`), it is statically linked, its
//! config runs it as the non-root user 65532 with the binary as entrypoint and carries the
//! OCI labels, and its name is what the chart's defaults pull. The Dockerfile builds the
//! same thing. `make test` runs `make image` first; without the tarball this test fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn image_tarball() -> PathBuf {
    let path = std::env::var_os("SHOAL_IMAGE_TAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo_root().join("target/image/shoal-oci.tar"));
    assert!(
        path.exists(),
        "{} is missing: run `make image` (make test does)",
        path.display()
    );
    path
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let (algorithm, hex) = digest.split_once(':').expect("algorithm:hex digest");
    layout.join("blobs").join(algorithm).join(hex)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// True when the ELF file has a program interpreter (PT_INTERP): it is dynamically linked.
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF file");
    assert_eq!(elf[4], 2, "64-bit ELF");
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([elf[o], elf[o + 1]]));
    let u64_at = |o: usize| {
        let bytes: [u8; 8] = elf[o..o + 8].try_into().expect("8 bytes");
        usize::try_from(u64::from_le_bytes(bytes)).expect("offset fits")
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let p = phoff + i * phentsize;
        u32::from_le_bytes(elf[p..p + 4].try_into().expect("4 bytes")) == 3
    })
}

/// (repository, tag) the chart's defaults pull: image.repository, image.tag or appVersion.
fn chart_image() -> (String, String) {
    let root = support::repo_root();
    let values: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("charts/shoal/values.yaml")).expect("values.yaml"),
    )
    .expect("values YAML");
    let chart: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("charts/shoal/Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart YAML");
    let repository = values["image"]["repository"].as_str().expect("repository");
    let tag = match values["image"]["tag"].as_str() {
        Some(tag) if !tag.is_empty() => tag,
        _ => chart["appVersion"].as_str().expect("appVersion"),
    };
    (repository.to_string(), tag.to_string())
}

#[test]
fn image_runs_static_shoal_as_non_root_and_is_what_the_chart_pulls() {
    let tarball = image_tarball();
    let dir = std::env::temp_dir().join(format!("shoal-image-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (layout, rootfs) = (dir.join("layout"), dir.join("rootfs"));
    std::fs::create_dir_all(&layout).expect("layout dir");
    std::fs::create_dir_all(&rootfs).expect("rootfs dir");
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&layout));

    // The OCI layout: one image, named as the chart pulls it.
    let oci_layout = json(&layout.join("oci-layout"));
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index = json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{index}");
    let descriptor = &manifests[0];
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let (repository, tag) = chart_image();
    assert_eq!(
        descriptor["annotations"]["io.containerd.image.name"].as_str(),
        Some(format!("{repository}:{tag}").as_str()),
        "the image is named what the chart's defaults pull: {index}"
    );
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"].as_str(),
        Some(tag.as_str())
    );
    let manifest = json(&blob(
        &layout,
        descriptor["digest"].as_str().expect("digest"),
    ));

    // The config: entrypoint, user, platform, labels.
    let config = json(&blob(
        &layout,
        manifest["config"]["digest"]
            .as_str()
            .expect("config digest"),
    ));
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532", "non-root: {config}");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/local/bin/shoal"]));
    assert_eq!(c["Cmd"], serde_json::json!(["run"]));
    assert!(c["ExposedPorts"]["8080/tcp"].is_object(), "{config}");
    let labels = &c["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/shoal-dev/shoal"
    );
    assert_eq!(
        labels["org.opencontainers.image.version"].as_str(),
        Some(tag.as_str())
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");

    // The root file system: the layers unpacked in order.
    let layers = manifest["layers"].as_array().expect("layers");
    assert!(!layers.is_empty(), "{manifest}");
    for layer in layers {
        let media = layer["mediaType"].as_str().expect("layer media type");
        let flag = if media.ends_with("+gzip") {
            "-xzf"
        } else {
            "-xf"
        };
        assert!(
            media.starts_with("application/vnd.oci.image.layer.v1.tar"),
            "{media}"
        );
        let path = blob(&layout, layer["digest"].as_str().expect("layer digest"));
        run(Command::new("tar")
            .arg(flag)
            .arg(&path)
            .arg("-C")
            .arg(&rootfs));
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).expect("/etc/passwd");
    assert!(passwd.contains(":65532:65532:"), "{passwd}");
    let binary = rootfs.join("usr/local/bin/shoal");
    let elf = std::fs::read(&binary).expect("/usr/local/bin/shoal in the image");
    assert!(!has_interpreter(&elf), "the binary is dynamically linked");
    let entries: Vec<String> = std::fs::read_dir(&rootfs)
        .expect("rootfs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !entries.iter().any(|e| e == "lib" || e == "lib64"),
        "an empty base: no shared libraries ({entries:?})"
    );

    // The binary runs from the unpacked root.
    let version = run(Command::new(&binary).arg("--version"));
    assert_eq!(version.trim(), format!("shoal {tag}"));
    let crd = run(Command::new(&binary).arg("crd"));
    let committed = std::fs::read_to_string(support::repo_root().join("crds/microservice.yaml"))
        .expect("crds/microservice.yaml");
    assert_eq!(
        crd, committed,
        "`shoal crd` from the image prints the committed CRD"
    );
    // As root (CI is), also inside the unpacked root alone, as the image's user: nothing
    // of this machine's file system is needed.
    if run(Command::new("id").arg("-u")).trim() == "0" {
        let inside = run(Command::new("chroot")
            .arg("--userspec=65532:65532")
            .arg(&rootfs)
            .args(["/usr/local/bin/shoal", "--version"]));
        assert_eq!(inside.trim(), format!("shoal {tag}"));
    } else {
        eprintln!("not root: the chroot run of the image's binary was not tried");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dockerfile_builds_the_same_image() {
    let dockerfile =
        std::fs::read_to_string(support::repo_root().join("Dockerfile")).expect("Dockerfile");
    let script =
        std::fs::read_to_string(support::repo_root().join("hack/image.sh")).expect("image.sh");
    for both in [
        "-C target-feature=+crt-static",
        "cargo build --profile dist --locked -p shoal --bin shoal --target",
        "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin",
        "org.opencontainers.image.source",
        "org.opencontainers.image.version",
        "org.opencontainers.image.licenses",
    ] {
        assert!(dockerfile.contains(both), "Dockerfile lacks {both:?}");
        assert!(script.contains(both), "hack/image.sh lacks {both:?}");
    }
    for line in [
        "FROM scratch",
        "USER 65532:65532",
        "ENTRYPOINT [\"/usr/local/bin/shoal\"]",
        "CMD [\"run\"]",
        "EXPOSE 8080",
    ] {
        assert!(
            dockerfile.lines().any(|l| l == line),
            "Dockerfile lacks {line:?}"
        );
    }
    for flag in [
        "--user 65532:65532",
        "--entrypoint /usr/local/bin/shoal --cmd run",
        "--exposed-ports 8080/tcp",
        "--oci-empty-base",
    ] {
        assert!(script.contains(flag), "hack/image.sh lacks {flag:?}");
    }
}
