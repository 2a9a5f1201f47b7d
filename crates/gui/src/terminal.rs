//! The terminal client's input and output. On a terminal, lines are typed in a line editor
//! (rustyline: arrow keys, Home/End, Ctrl-A/E/W/U, and the lines typed before with Up/Down or
//! Ctrl-R), and what arrives is printed above the line being typed, which is redrawn under it:
//! nothing splices into a half-typed line. A sent line is taken off the screen, so that it shows
//! once, as the room (the server's echo) has it. Piped in or out, lines are read and printed
//! plainly.
//!
//! The editor runs on a thread of its own (it blocks on the terminal); lines reach the async
//! client through a channel, and output goes through the editor's printer.

use std::io::{BufRead, IsTerminal, Write};

use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor, ExternalPrinter};
use tokio::sync::mpsc;

/// The prompt of the line editor.
const PROMPT: &str = "> ";

/// The most lines kept for Up/Down and Ctrl-R.
const HISTORY_LINES: usize = 500;

/// What the person did at the keyboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typed {
    /// A line (without its end).
    Line(String),
    /// Ctrl-C in the line editor (the terminal delivers no signal then).
    Interrupt,
    /// The end of input (Ctrl-D, or the end of what was piped in).
    End,
}

/// Where the client's lines go: above the line editor, or plainly to stdout.
pub struct Output {
    printer: Option<Box<dyn ExternalPrinter + Send>>,
}

impl Output {
    /// Prints a line (or several, separated by `\n`).
    pub fn line(&mut self, text: &str) {
        if let Some(printer) = &mut self.printer
            && printer.print(format!("{text}\n")).is_ok()
        {
            return;
        }
        println!("{text}");
    }

    /// Prints a line to stderr (plainly) or, with the editor, above it like the others.
    pub fn error(&mut self, text: &str) {
        match &mut self.printer {
            Some(_) => self.line(text),
            None => eprintln!("{text}"),
        }
    }

    /// Asks a question: on its own line with the editor (whose prompt is where the answer
    /// goes), or as a prompt the answer follows.
    pub fn ask(&mut self, question: &str) {
        match &mut self.printer {
            Some(_) => self.line(question.trim_end()),
            None => {
                print!("{question}");
                let _ = std::io::stdout().flush();
            }
        }
    }

    /// The line editor is in use.
    pub fn is_editing(&self) -> bool {
        self.printer.is_some()
    }
}

/// Starts reading what is typed: with the line editor when stdin and stdout are a terminal.
pub fn start() -> (mpsc::Receiver<Typed>, Output) {
    let (tx, rx) = mpsc::channel(16);
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        match editor() {
            Ok((mut editor, printer)) => {
                std::thread::spawn(move || edit(&mut editor, &tx));
                let output = Output {
                    printer: Some(printer),
                };
                return (rx, output);
            }
            Err(err) => {
                eprintln!("parla: no line editing on this terminal ({err}); reading plain lines")
            }
        }
    }
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(Typed::Line(line)).is_err() {
                return;
            }
        }
        let _ = tx.blocking_send(Typed::End);
    });
    (rx, Output { printer: None })
}

type Editor = DefaultEditor;

fn editor() -> rustyline::Result<(Editor, Box<dyn ExternalPrinter + Send>)> {
    let config = Config::builder()
        .max_history_size(HISTORY_LINES)?
        .auto_add_history(false)
        .build();
    let mut editor = Editor::with_config(config)?;
    let printer = editor.create_external_printer()?;
    Ok((editor, Box::new(printer)))
}

/// The editor's loop: one line after another until the end of input or the client is gone.
fn edit(editor: &mut Editor, tx: &mpsc::Sender<Typed>) {
    loop {
        let typed = match editor.readline(PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                    take_off_screen(editor, &line);
                }
                Typed::Line(line)
            }
            Err(ReadlineError::Interrupted) => Typed::Interrupt,
            Err(ReadlineError::Eof) => Typed::End,
            Err(err) => {
                eprintln!("parla: reading the terminal failed: {err}");
                Typed::End
            }
        };
        let end = typed == Typed::End;
        if tx.blocking_send(typed).is_err() || end {
            return;
        }
    }
}

/// Erases the line just typed (prompt included, over as many rows as it took, wide characters
/// counted as the two columns they take): what was said comes back from the server and is shown
/// then, once.
fn take_off_screen(editor: &mut Editor, line: &str) {
    let columns = editor
        .dimensions()
        .map_or(80, |(columns, _)| columns.max(1));
    let width = PROMPT.len() + unicode_width::UnicodeWidthStr::width(line);
    let rows = width.div_ceil(columns as usize).max(1);
    let mut out = std::io::stdout().lock();
    for _ in 0..rows {
        // Up a row, and clear it.
        let _ = out.write_all(b"\x1b[1A\x1b[2K");
    }
    let _ = out.write_all(b"\r");
    let _ = out.flush();
}
