//! maildirmake(1): `maildirmake dir` makes dir and its `tmp`, `new` and `cur`, each
//! mode 0700. An existing dir is an error: maildirmake never takes over a directory.

use qmail::exit::Failure;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

pub fn run(dir: &Path) -> Result<(), Failure> {
    let shown = dir.display();
    let mkdir = |p: &Path, what: &dyn std::fmt::Display| {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(p)
            .map_err(|e| Failure::io(format_args!("unable to mkdir {what}"), &e))
    };
    mkdir(dir, &shown)?;
    for sub in ["tmp", "new", "cur"] {
        mkdir(&dir.join(sub), &format_args!("{shown}/{sub}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn three_subdirectories_mode_0700() {
        let d = std::env::temp_dir().join(format!("rqmail-mdm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        run(&d).unwrap();
        for sub in ["", "tmp", "new", "cur"] {
            let m = std::fs::metadata(d.join(sub)).unwrap();
            assert!(m.is_dir());
            assert_eq!(m.permissions().mode() & 0o077, 0);
        }
        let again = run(&d).unwrap_err();
        assert_eq!(
            again.text,
            format!("unable to mkdir {}: file already exists", d.display())
        );
        assert!(!again.permanent);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
