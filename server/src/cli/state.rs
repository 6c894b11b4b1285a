//! `haplane state void-entry`: the operator's repair of a managed-state log entry that no node
//! can read and no snapshot covers (docs/behaviour.md §6.4). It works on the store directly, with
//! the same store settings (flags, variables, `--config`) as the nodes.

use crate::app::open_store;
use crate::config::{LaunchArgs, Settings};
use crate::state::log::StateLog;
use std::process::ExitCode;

/// `haplane state …`.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    #[command(subcommand)]
    command: StateCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StateCommand {
    /// Replace a damaged or missing log entry with a void one, so replay goes on past it. The
    /// writes that entry carried are lost; its bytes are kept under state/damaged/. Refuses an
    /// entry that can be read.
    VoidEntry {
        /// The entry's position: the number in state/log/<seq>.json.
        #[arg(long)]
        seq: u64,
        /// Do it; without this the command only says what it would do.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        store: Box<LaunchArgs>,
    },
}

/// Runs the command; exit 0 done, 1 refused or failed, 2 bad settings.
pub async fn run(args: StateArgs) -> ExitCode {
    let StateCommand::VoidEntry { seq, yes, store } = args.command;
    let settings = match Settings::load(*store) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    if !yes {
        eprintln!(
            "would replace log entry {seq} with a void entry: the writes it carried are lost \
             (its bytes are kept under state/damaged/). Run again with --yes to do it."
        );
        return ExitCode::FAILURE;
    }
    let store = match open_store(&settings).await {
        Ok(store) => store,
        Err(err) => {
            eprintln!("error: cannot open the store: {err}");
            return ExitCode::FAILURE;
        }
    };
    match StateLog::new(store).void_entry(seq).await {
        Ok(voided) => {
            match voided.kept {
                Some(kept) => println!(
                    "{} now holds a void entry; the damaged bytes are in {kept}. The writes it carried are lost.",
                    voided.key
                ),
                None => println!(
                    "{} was missing and now holds a void entry. The writes it carried are lost.",
                    voided.key
                ),
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
