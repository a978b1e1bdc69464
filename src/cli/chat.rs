//! `qwen3-sft chat`: a multi-turn conversation in the terminal with Qwen3's official template.
//! Earlier turns keep only their answers (the template drops the reasoning of assistant turns
//! before the last user turn, as Qwen3's docs ask of multi-turn use). Commands: `/reset`,
//! `/system TEXT`, `/think on|off`, `/help`, `/exit`. Ctrl-C stops the answer being generated and
//! returns to the prompt; at the prompt, a second Ctrl-C in a row exits.
use super::args::{self, ModelArgs, PromptArgs, SamplingArgs};
use crate::data::chat::Message;
use crate::infer::text::{chat_prompt_ids, Completion, StreamPrinter};
use crate::infer::{generate_stream, Stop};
use anyhow::{Context, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub template: PromptArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Set while an answer is being generated: Ctrl-C then stops it instead of counting toward exit.
static GENERATING: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
/// Ctrl-C presses at the prompt since the last line was read.
static PRESSES: AtomicUsize = AtomicUsize::new(0);

fn on_ctrl_c() {
    if GENERATING.load(Ordering::SeqCst) {
        STOP.store(true, Ordering::SeqCst);
    } else if PRESSES.fetch_add(1, Ordering::SeqCst) >= 1 {
        print!("\x1b[0m");
        println!();
        let _ = std::io::stdout().flush();
        std::process::exit(130);
    } else {
        eprint!("\n(press Ctrl-C again to exit, or type /exit)\n> ");
    }
}

const HELP: &str = "commands: /reset (forget the conversation), /system TEXT (set the system prompt; empty for none), \
/think on|off, /exit; Ctrl-C stops an answer";

pub fn run(args: &ChatArgs) -> Result<()> {
    let resolved = args.model.resolve()?;
    let tok = args::tokenizer(&resolved)?;
    let mut opts = args.sampling.options(
        &args::generation_config(&resolved)?,
        resolved.config.max_position_embeddings,
    )?;
    eprintln!("loading {} ...", args.model.model);
    let model = resolved.load()?.model;
    ctrlc::set_handler(on_ctrl_c).context("installing the Ctrl-C handler")?;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut system = args.template.system.clone();
    let mut think = args.template.thinking();
    let mut history: Vec<Message> = Vec::new();
    eprintln!("{HELP}");
    let stdin = std::io::stdin();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).context("reading stdin")? == 0 {
            println!();
            return Ok(()); // end of input (Ctrl-D)
        }
        PRESSES.store(0, Ordering::SeqCst);
        let line = line.trim();
        match line
            .split_once(' ')
            .map_or((line, ""), |(c, rest)| (c, rest.trim()))
        {
            ("", _) => continue,
            ("/exit" | "/quit", _) => return Ok(()),
            ("/help", _) => eprintln!("{HELP}"),
            ("/reset", _) => {
                history.clear();
                eprintln!("(conversation cleared)");
            }
            ("/system", text) => {
                system = text.to_string();
                eprintln!(
                    "(system prompt {})",
                    if system.is_empty() { "removed" } else { "set" }
                );
            }
            ("/think", "on") | ("/think", "off") => {
                think = line.ends_with("on");
                eprintln!("(thinking {})", if think { "on" } else { "off" });
            }
            (c, _) if c.starts_with('/') => eprintln!("unknown command {c}; {HELP}"),
            _ => {
                history.push(Message::user(line));
                let mut messages = Vec::with_capacity(history.len() + 1);
                if !system.is_empty() {
                    messages.push(Message::system(&system));
                }
                messages.extend(history.iter().cloned());
                let ids = chat_prompt_ids(&tok, &messages, Some(think))?;
                let mut out = std::io::stdout().lock();
                let mut printer = StreamPrinter::new(&tok, &mut out, color);
                let mut failed = None;
                STOP.store(false, Ordering::SeqCst);
                GENERATING.store(true, Ordering::SeqCst);
                let result = generate_stream(&model, &[ids], &opts, &mut |_, id| {
                    failed = printer.push(id).err();
                    failed.is_none() && !STOP.load(Ordering::SeqCst)
                });
                GENERATING.store(false, Ordering::SeqCst);
                printer.finish()?;
                drop(out);
                if let Some(e) = failed {
                    return Err(e.context("printing the answer"));
                }
                let g = result?.remove(0);
                if g.stop == Stop::Interrupted {
                    eprintln!("(stopped)");
                }
                // What was shown stays in the conversation, stopped or not, so turns alternate.
                let c = Completion::decode(&tok, &g.token_ids)?;
                history.push(Message::assistant(&c.think, &c.answer));
                opts.seed = opts.seed.wrapping_add(1); // a fresh draw each turn, reproducible from --seed
            }
        }
    }
}
