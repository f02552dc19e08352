//! `shmkit bench --plot`.
use std::path::Path;

use shmkit::bench::engine::CaseReport;

pub fn check_path(p: &Path) -> Result<(), String> {
    let _ = p;
    Ok(())
}

pub fn draw(p: &Path, r: &[CaseReport]) -> Result<(), String> {
    let _ = (p, r);
    Err("not yet".into())
}
