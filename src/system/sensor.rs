//! A temperature sensor named by its thermal zone type (`x86_pkg_temp`,
//! `/sys/class/thermal/thermal_zone*/type`) or its hwmon label (`Package
//! id 0`, `/sys/class/hwmon/hwmon*/temp*_label`), resolved to its file once,
//! when the rules load (and again at each reload): zone and hwmon numbers
//! may change between boots, names do not. A name that matches nothing, or
//! more than one sensor, is a configuration error.

use std::fs;
use std::path::{Path, PathBuf};

/// The sensor file of the thermal zone or hwmon input called `name`.
pub fn resolve(name: &str) -> Result<PathBuf, String> {
    resolve_in(Path::new("/sys/class"), name)
}

fn resolve_in(class: &Path, name: &str) -> Result<PathBuf, String> {
    if name.is_empty() || name.contains('/') {
        return Err(format!(
            "{name:?} is neither an absolute path nor a sensor name"
        ));
    }
    let mut found = Vec::new();
    for zone in entries(&class.join("thermal"), "thermal_zone") {
        if read_name(&zone.join("type")).as_deref() == Some(name) {
            found.push(zone.join("temp"));
        }
    }
    for hwmon in entries(&class.join("hwmon"), "hwmon") {
        for label in entries(&hwmon, "temp") {
            let Some(file) = label.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            if let Some(input) = file.strip_suffix("_label")
                && read_name(&label).as_deref() == Some(name)
            {
                found.push(hwmon.join(format!("{input}_input")));
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "no thermal zone of type {name:?} and no hwmon sensor labelled {name:?} in {}/thermal or {}/hwmon; name the sensor file by its path",
            class.display(),
            class.display()
        )),
        many => Err(format!(
            "{name:?} names {} sensors ({}); name the one meant by its path",
            many.len(),
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The entries of `dir` whose names start with `prefix`, sorted.
fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn read_name(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_types_and_hwmon_labels_resolve() {
        let root = std::env::temp_dir().join(format!("heartwatch-sensor-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let zone = root.join("thermal/thermal_zone3");
        let hwmon = root.join("hwmon/hwmon1");
        fs::create_dir_all(&zone).unwrap();
        fs::create_dir_all(&hwmon).unwrap();
        fs::write(zone.join("type"), "x86_pkg_temp\n").unwrap();
        fs::write(hwmon.join("temp2_label"), "Package id 0\n").unwrap();
        fs::write(hwmon.join("temp3_label"), "Core 0\n").unwrap();
        fs::write(hwmon.join("temp4_label"), "Core 0\n").unwrap();
        assert_eq!(resolve_in(&root, "x86_pkg_temp"), Ok(zone.join("temp")));
        assert_eq!(
            resolve_in(&root, "Package id 0"),
            Ok(hwmon.join("temp2_input"))
        );
        assert!(
            resolve_in(&root, "Core 0")
                .unwrap_err()
                .contains("names 2 sensors")
        );
        assert!(
            resolve_in(&root, "gpu")
                .unwrap_err()
                .starts_with("no thermal zone")
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
