//! The chat screen: room bar, status bar, compose box, member list and messages. It only reads
//! the state and records intents; `mod.rs` carries them out.

use eframe::egui::{
    self, Align, Button, CentralPanel, Color32, FontId, Key, Layout, Panel, RichText, ScrollArea,
    TextEdit, TextFormat, text::LayoutJob,
};
use parla_net::client::{MessageKind, casefold};

use super::theme::{append_styled, name_colour};
use super::{ConnState, Intent, ParlaApp, too_long};
use crate::chat::{LineKind, PingStatus, SendPlan};
use crate::input::{self, Input};

/// The width of the time column in the message area ("23:59" and a gap).
const TIME_WIDTH: f32 = 40.0;

impl ParlaApp {
    pub(super) fn chat_screen(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>) {
        let online = matches!(self.conn, ConnState::Online { .. }) && self.closing.is_none();
        Panel::top("room").show(ui, |ui| self.room_bar(ui, intents));
        Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        Panel::bottom("compose").show(ui, |ui| self.compose(ui, intents, online));
        Panel::right("members")
            .resizable(false)
            .exact_size(170.0)
            .show(ui, |ui| self.member_list(ui));
        CentralPanel::default().show(ui, |ui| self.messages(ui));
    }

    fn room_bar(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let room = self.chat.room.as_deref().unwrap_or("(no room)");
            ui.label(RichText::new(room).size(18.0).strong());
            if let Some(topic) = self.chat.current_topic() {
                ui.separator();
                let mut job = LayoutJob::default();
                let visuals = ui.visuals().clone();
                let base =
                    TextFormat::simple(FontId::proportional(14.0), visuals.weak_text_color());
                append_styled(&mut job, topic, &base, &visuals);
                ui.add(egui::Label::new(job).truncate());
            }
        });
        if let ConnState::Ended { reason, .. } = &self.conn {
            let reason = reason.clone();
            let closing = self.closing.is_some();
            egui::Frame::new()
                .fill(ui.visuals().error_fg_color.gamma_multiply(0.18))
                .corner_radius(6)
                .inner_margin(8)
                .show(ui, |ui| {
                    ui.set_width(ui.available_width());
                    ui.horizontal_wrapped(|ui| {
                        ui.label(RichText::new(format!("Disconnected: {reason}.")).strong());
                        if closing {
                            ui.label("The window closes in a moment.");
                        } else if ui.button("Reconnect…").clicked() {
                            intents.push(Intent::Reconnect);
                        }
                    });
                });
        }
        ui.add_space(2.0);
    }

    fn status_bar(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let (dot, colour) = match &self.conn {
                ConnState::Online { .. } => ("●", Color32::from_rgb(60, 180, 90)),
                ConnState::Ended { .. } => ("●", ui.visuals().error_fg_color),
                _ => ("●", ui.visuals().warn_fg_color),
            };
            ui.colored_label(colour, dot);
            ui.label(self.conn.describe());
            ui.separator();
            let server = match &self.conn {
                ConnState::Online { server }
                | ConnState::Registering { server }
                | ConnState::Ended { server, .. } => server.to_string(),
                ConnState::Connecting { addr } => addr.to_string(),
                ConnState::Offline => "-".to_owned(),
            };
            match &self.chat.server_name {
                Some(name) => ui.label(format!("server {server} ({name})")),
                None => ui.label(format!("server {server}")),
            };
            ui.separator();
            ui.label(format!(
                "you are {}",
                self.chat.me.as_deref().unwrap_or("-")
            ));
            ui.separator();
            let ping = self.chat.ping.describe();
            match self.chat.ping {
                PingStatus::Missed(_) => ui.colored_label(ui.visuals().warn_fg_color, ping),
                _ => ui.label(ping),
            };
        });
    }

    fn compose(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>, online: bool) {
        ui.add_space(4.0);
        // The note above the box: why the last line was refused, or what sending will do.
        let plan = match input::parse(&self.input) {
            Input::Command(cmd) => self.plan_for(&cmd),
            _ => None,
        };
        let refuse = matches!(plan, Some(SendPlan::TooLong(_)));
        if let Some(err) = &self.compose_error {
            ui.colored_label(ui.visuals().error_fg_color, err);
        } else {
            match plan {
                Some(SendPlan::TooLong(bytes)) => {
                    ui.colored_label(ui.visuals().error_fg_color, too_long(bytes));
                }
                Some(SendPlan::Split(n)) => {
                    ui.weak(format!(
                        "Long message: it will go out as {n} messages (nothing is cut)."
                    ));
                }
                _ => {}
            }
        }
        ui.horizontal(|ui| {
            let label = ui.label("Message");
            let send_width = 64.0;
            let edit_width = ui.available_width() - send_width - ui.spacing().item_spacing.x;
            let edit = ui
                .add_enabled(
                    online,
                    TextEdit::singleline(&mut self.input)
                        // A fixed id: the note above the box comes and goes, and an automatic
                        // id would change with it, taking the focus away mid-typing.
                        .id_salt("message")
                        .hint_text("Say something — /help lists the commands")
                        .desired_width(edit_width),
                )
                .labelled_by(label.id);
            if edit.changed() {
                self.compose_error = None;
            }
            let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
            let send = ui.add_enabled(
                online && !refuse,
                Button::new("Send").min_size(egui::vec2(send_width, 0.0)),
            );
            if online && (entered || send.clicked()) {
                intents.push(Intent::SendLine);
            }
            // Keep the typing where it belongs: after sending, on entering the room, and
            // whenever nothing else has the focus.
            let nothing_focused = ui.memory(|m| m.focused().is_none());
            if online && (self.focus_pending || entered || send.clicked() || nothing_focused) {
                self.focus_pending = false;
                edit.request_focus();
            }
        });
        ui.add_space(4.0);
    }

    fn member_list(&self, ui: &mut egui::Ui) {
        let members = self.chat.current_members();
        let (heading, note) = self.chat.members_heading();
        ui.add_space(4.0);
        ui.label(RichText::new(heading).strong());
        if let Some(note) = note {
            ui.weak(note);
        }
        ui.separator();
        ScrollArea::vertical()
            .id_salt("members")
            .auto_shrink(false)
            .show(ui, |ui| {
                let dark = ui.visuals().dark_mode;
                for name in members {
                    let colour = name_colour(name, dark);
                    let me = self
                        .chat
                        .me
                        .as_deref()
                        .is_some_and(|m| casefold(m) == casefold(name));
                    let text = RichText::new(name).color(colour);
                    if me {
                        ui.horizontal(|ui| {
                            ui.label(text.strong());
                            ui.weak("(you)");
                        });
                    } else {
                        ui.label(text);
                    }
                }
            });
    }

    fn messages(&self, ui: &mut egui::Ui) {
        let visuals = ui.visuals().clone();
        let dark = visuals.dark_mode;
        let body = FontId::proportional(14.0);
        let small = FontId::monospace(11.5);
        let fmt = |font: &FontId, color: Color32| TextFormat::simple(font.clone(), color);
        ScrollArea::vertical()
            .id_salt("messages")
            .auto_shrink(false)
            .stick_to_bottom(true)
            .show(ui, |ui| {
                ui.spacing_mut().item_spacing.y = 3.0;
                for line in &self.chat.lines {
                    let mut job = LayoutJob::default();
                    let mut own_line = false;
                    match &line.kind {
                        LineKind::System(text) => {
                            let mut f = fmt(&body, visuals.weak_text_color());
                            f.italics = true;
                            append_styled(&mut job, text, &f, &visuals);
                        }
                        LineKind::Error(text) => {
                            let f = fmt(&body, visuals.error_fg_color);
                            append_styled(&mut job, text, &f, &visuals);
                        }
                        LineKind::Message {
                            from,
                            text,
                            kind,
                            own,
                            direct,
                            room,
                        } => {
                            own_line = *own;
                            let name = fmt(&body, name_colour(from, dark));
                            let plain = fmt(&body, visuals.strong_text_color());
                            if let Some(room) = room {
                                job.append(
                                    &format!("[{room}] "),
                                    0.0,
                                    fmt(&body, visuals.weak_text_color()),
                                );
                            }
                            let tag = |job: &mut LayoutJob, text: &str| {
                                let mut f = fmt(&small, visuals.strong_text_color());
                                f.background = visuals.selection.bg_fill.gamma_multiply(0.6);
                                job.append(text, 0.0, f);
                                job.append(" ", 0.0, plain.clone());
                            };
                            match kind {
                                MessageKind::Normal => {
                                    job.append(from, 0.0, name);
                                    job.append(": ", 0.0, fmt(&body, visuals.weak_text_color()));
                                    if let Some(to) = direct {
                                        let t = if *own {
                                            format!("(direct to {to})")
                                        } else {
                                            "(direct)".to_owned()
                                        };
                                        tag(&mut job, &t);
                                    }
                                    append_styled(&mut job, text, &plain, &visuals);
                                }
                                MessageKind::Action => {
                                    let mut italic = plain.clone();
                                    italic.italics = true;
                                    job.append("* ", 0.0, italic.clone());
                                    job.append(from, 0.0, name);
                                    job.append(" ", 0.0, italic.clone());
                                    if let Some(to) = direct.as_ref().filter(|_| *own) {
                                        tag(&mut job, &format!("(direct to {to})"));
                                    } else if direct.is_some() {
                                        tag(&mut job, "(direct)");
                                    }
                                    append_styled(&mut job, text, &italic, &visuals);
                                }
                                MessageKind::Notice => {
                                    job.append(&format!("-{from}- "), 0.0, name);
                                    let f = fmt(&body, visuals.text_color());
                                    append_styled(&mut job, text, &f, &visuals);
                                }
                            }
                        }
                    }
                    // Time in a column of its own, so that wrapped rows keep a hanging indent.
                    let fill = if own_line {
                        visuals.faint_bg_color.gamma_multiply(4.0)
                    } else {
                        Color32::TRANSPARENT
                    };
                    egui::Frame::new()
                        .fill(fill)
                        .corner_radius(4)
                        .inner_margin(egui::Margin::symmetric(4, 1))
                        .show(ui, |ui| {
                            ui.set_width(ui.available_width());
                            ui.horizontal_top(|ui| {
                                let time = RichText::new(&line.time)
                                    .font(body.clone())
                                    .color(visuals.weak_text_color());
                                ui.allocate_ui_with_layout(
                                    egui::vec2(TIME_WIDTH, 0.0),
                                    Layout::top_down(Align::Min),
                                    |ui| {
                                        ui.set_min_width(TIME_WIDTH);
                                        ui.add(egui::Label::new(time).selectable(false));
                                    },
                                );
                                ui.add(egui::Label::new(job).wrap());
                            });
                        });
                }
            });
    }
}
