//! The `saltship` binary: everything lives in the library; this maps its outcome to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    saltship::app::main()
}
