//! `shmkit ls | inspect | rm | gc`.
use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct LsArgs {}
#[derive(Args, Debug)]
pub struct InspectArgs {
    name: String,
}
#[derive(Args, Debug)]
pub struct RmArgs {
    name: String,
}
#[derive(Args, Debug)]
pub struct GcArgs {
    #[arg(long)]
    yes: bool,
}
pub fn ls(_: &LsArgs) -> Result<ExitCode, String> {
    Err("todo".into())
}
pub fn inspect(a: &InspectArgs) -> Result<ExitCode, String> {
    Err(a.name.clone())
}
pub fn rm(a: &RmArgs) -> Result<ExitCode, String> {
    Err(a.name.clone())
}
pub fn gc(a: &GcArgs) -> Result<ExitCode, String> {
    Err(format!("{}", a.yes))
}
