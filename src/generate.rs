//! Shell completions and the man page, generated from the clap definition so that they never
//! drift from `--help`.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::Shell;
use roff::{Roff, bold, roman};

use crate::cli::{Cli, EXAMPLES, Generate};
use crate::exit::Exit;

/// Writes what `kind` asks for to `out`.
pub fn write(kind: Generate, out: &mut dyn Write) -> io::Result<()> {
    let shell = match kind {
        Generate::Man => return out.write_all(&man_page()?),
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
        Generate::Powershell => Shell::PowerShell,
        Generate::Elvish => Shell::Elvish,
    };
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "abatch", &mut script);
    out.write_all(&script)
}

/// The man page: clap's sections (name, synopsis, description, options by group), then exit
/// status, environment and examples, which clap has no sections for.
pub fn man_page() -> io::Result<Vec<u8>> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;

    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for exit in Exit::DOCUMENTED {
        roff.control("TP", [])
            .text([bold((exit as u8).to_string())])
            .text([roman(exit.meaning())]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "Every option can also be set by an environment variable; an option on the command line \
         wins. Flags take true or false (also 1/0, yes/no, on/off).",
    )]);
    for arg in cmd.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        roff.control("TP", [])
            .text([bold(env.to_string_lossy())])
            .text([roman(format!("--{long}"))]);
    }
    roff.text([roman(
        "HTTPS_PROXY, HTTP_PROXY and NO_PROXY choose a proxy, as for other tools.",
    )]);
    roff.control("SH", ["EXAMPLES"]);
    for (what, command) in EXAMPLES {
        roff.control("TP", [])
            .text([roman(what)])
            .text([bold(command)]);
    }
    roff.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    Ok(page)
}
