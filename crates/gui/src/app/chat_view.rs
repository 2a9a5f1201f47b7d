//! The chat screen: room bar, status bar, compose box, member list and messages. It only reads
//! the state and records intents; `mod.rs` carries them out.

use std::time::Instant;

use eframe::egui::{
    self, Align, Button, CentralPanel, Color32, FontId, Key, Layout, Panel, RichText, ScrollArea,
    Sense, TextEdit, TextFormat, text::LayoutJob,
};
use parla_net::client::{Command, Member, MessageKind, casefold};

use super::theme::{append_styled, name_colour};
use super::{ConnState, Intent, ParlaApp, too_long};
use crate::chat::{LineKind, PingStatus, SendPlan};
use crate::input::{self, Input, ban_mask};

/// The width of the time column in the message area ("23:59" and a gap).
const TIME_WIDTH: f32 = 40.0;

/// Below this width the member list folds away (a button in the room bar shows it).
const NARROW_BELOW: f32 = 720.0;

impl ParlaApp {
    /// Connected and registered (not reconnecting, not leaving): what is typed can be sent.
    fn online(&self) -> bool {
        matches!(self.conn, ConnState::Online { .. })
            && self.closing.is_none()
            && self.chat.reconnect_at.is_none()
    }

    pub(super) fn chat_screen(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>) {
        let online = self.online();
        // A narrow window keeps its width for the messages: the member list folds away behind
        // a button in the room bar.
        self.narrow = ui.available_width() < NARROW_BELOW;
        if self.chat.rooms.len() > 1 {
            Panel::top("rooms").show(ui, |ui| self.room_tabs(ui, intents));
        }
        Panel::top("room").show(ui, |ui| self.room_bar(ui, intents));
        Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        Panel::bottom("compose").show(ui, |ui| self.compose(ui, intents, online));
        if !self.narrow || self.members_open {
            Panel::right("members")
                .resizable(false)
                .exact_size(170.0)
                .show(ui, |ui| self.member_list(ui, intents, online));
        }
        CentralPanel::default().show(ui, |ui| self.messages(ui, intents, online));
    }

    /// The rooms we are in, as tabs: the current one selected, the others with how many
    /// messages came since; a click makes one current (`/join` of a room we are in).
    fn room_tabs(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>) {
        let online = self.online();
        ui.horizontal_wrapped(|ui| {
            for room in &self.chat.rooms {
                let key = casefold(room);
                let current = self
                    .chat
                    .room
                    .as_deref()
                    .is_some_and(|r| casefold(r) == key);
                let text = match self.chat.room_unread.get(&key) {
                    Some(n) if !current => format!("{room} ({n})"),
                    _ => room.clone(),
                };
                let tab = ui.add_enabled(online, Button::selectable(current, text));
                if tab.clicked() && !current {
                    intents.push(Intent::Send(Command::Join(room.clone())));
                }
            }
        });
    }

    fn room_bar(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>) {
        let online = self.online();
        let in_room = online && self.chat.room.is_some();
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let room = self.chat.room.as_deref().unwrap_or("(no room)");
            ui.label(RichText::new(room).size(18.0).strong());
            // The buttons first, on the right, so a long topic is cut before them.
            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                if self.narrow {
                    let n = self.chat.current_members().len();
                    ui.toggle_value(&mut self.members_open, format!("Members ({n})"))
                        .on_hover_text("Show or hide who is here");
                }
                if ui
                    .add_enabled(in_room, Button::new("Invite…"))
                    .on_hover_text("Invite someone to this room (the way into an invite-only room)")
                    .clicked()
                {
                    intents.push(Intent::OpenInvite);
                }
                if ui
                    .add_enabled(in_room, Button::new("Edit topic"))
                    .on_hover_text("Change the topic (in a +t room only its operators can)")
                    .clicked()
                {
                    intents.push(Intent::EditTopic);
                }
                ui.with_layout(Layout::left_to_right(Align::Center), |ui| {
                    if let Some(topic) = self.chat.current_topic() {
                        ui.separator();
                        let mut job = LayoutJob::default();
                        let visuals = ui.visuals().clone();
                        let base = TextFormat::simple(
                            FontId::proportional(14.0),
                            visuals.weak_text_color(),
                        );
                        append_styled(&mut job, topic, &base, &visuals);
                        ui.add(egui::Label::new(job).truncate());
                    }
                });
            });
        });
        let room = self.chat.room.clone().unwrap_or_default();
        if let Some(topic) = self.topic_edit.as_mut() {
            let width = ui.available_width() - 150.0;
            let hint = "What this room is about (empty: no topic)";
            let focus = &mut self.form_focus;
            match form_row(
                ui,
                "Topic",
                topic,
                hint,
                width,
                "Set topic",
                |_| true,
                focus,
            ) {
                Some(true) => intents.push(Intent::Send(Command::Topic {
                    room: Some(room.clone()),
                    topic: Some(topic.trim().to_owned()),
                })),
                Some(false) => intents.push(Intent::CloseEditors),
                None => {}
            }
        }
        if let Some(name) = self.invite_edit.as_mut() {
            let hint = format!("Name of the person to invite to {room}");
            let button = format!("Invite to {room}");
            let valid = |n: &str| !n.trim().is_empty() && !n.trim().contains(' ');
            let focus = &mut self.form_focus;
            match form_row(ui, "Invite", name, &hint, 220.0, &button, valid, focus) {
                Some(true) => intents.push(Intent::Send(Command::Invite {
                    name: name.trim().to_owned(),
                    room: Some(room.clone()),
                })),
                Some(false) => intents.push(Intent::CloseEditors),
                None => {}
            }
        }
        if let Some((by, to)) = &self.chat.invitation {
            ui.horizontal(|ui| {
                ui.label(format!("{by} invited you to {to}."));
                if ui
                    .add_enabled(online, Button::new(format!("Join {to}")))
                    .clicked()
                {
                    intents.push(Intent::AcceptInvitation);
                }
                if ui.button("Dismiss").clicked() {
                    intents.push(Intent::DismissInvitation);
                }
            });
        }
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
                _ if self.chat.reconnect_at.is_some() => ("●", ui.visuals().warn_fg_color),
                ConnState::Online { .. } => ("●", Color32::from_rgb(60, 180, 90)),
                ConnState::Ended { .. } => ("●", ui.visuals().error_fg_color),
                _ => ("●", ui.visuals().warn_fg_color),
            };
            ui.colored_label(colour, dot);
            match self.chat.reconnect_at {
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        ui.label("reconnecting…");
                    } else {
                        // "reconnecting in 4 s…", counting down.
                        let wait = crate::chat::reconnect_wait(left, 1);
                        ui.label(format!("reconnecting {wait}…"));
                        ui.ctx()
                            .request_repaint_after(left.min(std::time::Duration::from_secs(1)));
                    }
                }
                None => {
                    ui.label(self.conn.describe());
                }
            }
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
        if let Some(typing) = self.chat.typing_text(Instant::now()) {
            ui.label(RichText::new(typing).italics().weak());
        }
        if let Some(err) = &self.compose_error {
            ui.colored_label(ui.visuals().error_fg_color, err);
        } else {
            match plan {
                Some(SendPlan::TooLong(bytes)) => {
                    ui.colored_label(ui.visuals().error_fg_color, too_long(bytes));
                }
                Some(split @ SendPlan::Split(_)) => {
                    ui.weak(split.note().unwrap_or_default());
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
                intents.push(Intent::Typed);
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
            if std::mem::take(&mut self.cursor_to_end)
                && let Some(mut state) = egui::text_edit::TextEditState::load(ui.ctx(), edit.id)
            {
                let end = egui::text::CCursor::new(self.input.chars().count());
                state
                    .cursor
                    .set_char_range(Some(egui::text::CCursorRange::one(end)));
                state.store(ui.ctx(), edit.id);
            }
        });
        ui.add_space(4.0);
    }

    fn member_list(&self, ui: &mut egui::Ui, intents: &mut Vec<Intent>, online: bool) {
        // Operators first, then the voiced, then everyone, as IRC clients list them.
        let mut members: Vec<&Member> = self.chat.current_members().iter().collect();
        members.sort_by_key(|m| m.rank());
        let operator = self.chat.operator_here();
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
                for member in members {
                    let name = &member.name;
                    let colour = name_colour(name, dark);
                    let me = self
                        .chat
                        .me
                        .as_deref()
                        .is_some_and(|m| casefold(m) == casefold(name));
                    let text = RichText::new(format!("{}{name}", member.prefix())).color(colour);
                    let label = if me {
                        ui.horizontal(|ui| {
                            let label =
                                ui.add(egui::Label::new(text.strong()).sense(Sense::click()));
                            ui.weak("(you)");
                            label
                        })
                        .inner
                    } else {
                        ui.add(egui::Label::new(text).sense(Sense::click()))
                    };
                    let label = match (member.is_operator(), member.is_voiced()) {
                        (true, _) => label.on_hover_text("Room operator"),
                        (false, true) => {
                            label.on_hover_text("Voiced: may speak when the room is moderated")
                        }
                        _ => label,
                    };
                    if online {
                        label.context_menu(|ui| member_menu(ui, member, me, operator, intents));
                    }
                }
            });
    }

    fn messages(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>, online: bool) {
        let visuals = ui.visuals().clone();
        // Times of other days ("Dec 1 14:02", from history) need a wider column.
        let time_width = if self.chat.lines.iter().any(|l| l.time.len() > 5) {
            TIME_WIDTH * 2.3
        } else {
            TIME_WIDTH
        };
        let dark = visuals.dark_mode;
        let body = FontId::proportional(14.0);
        let small = FontId::monospace(11.5);
        let fmt = |font: &FontId, color: Color32| TextFormat::simple(font.clone(), color);
        let jump = std::mem::take(&mut self.jump_to_newest);
        let mut area = ScrollArea::vertical()
            .id_salt("messages")
            .auto_shrink(false)
            .stick_to_bottom(true);
        if let Some(y) = self.messages_scroll_to.take() {
            area = area.vertical_scroll_offset(y);
        }
        let output = area.show(ui, |ui| {
            ui.spacing_mut().item_spacing.y = 3.0;
            for line in &self.chat.lines {
                let mut job = LayoutJob::default();
                let (mut own_line, mut mention_line) = (false, false);
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
                    LineKind::Divider(text) => {
                        ui.horizontal(|ui| {
                            let width = (ui.available_width() - 8.0).max(0.0);
                            ui.add_sized(
                                [width, 18.0],
                                egui::Label::new(
                                    RichText::new(format!("— {text} —"))
                                        .color(visuals.weak_text_color())
                                        .font(body.clone()),
                                )
                                .selectable(false),
                            );
                        });
                        continue;
                    }
                    LineKind::Message {
                        from,
                        text,
                        kind,
                        own,
                        direct,
                        room,
                        mention,
                    } => {
                        own_line = *own;
                        mention_line = *mention;
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
                // Our own lines faintly; lines that name us stand out.
                let fill = if mention_line {
                    visuals.warn_fg_color.gamma_multiply(0.18)
                } else if own_line {
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
                                egui::vec2(time_width, 0.0),
                                Layout::top_down(Align::Min),
                                |ui| {
                                    ui.set_min_width(time_width);
                                    ui.add(egui::Label::new(time).selectable(false));
                                },
                            );
                            message_label(ui, job, &visuals);
                        });
                    });
            }
            if jump {
                ui.scroll_to_cursor(Some(Align::BOTTOM));
            }
        });
        // Scrolled up while more arrived: a button to the newest (sending jumps there too).
        let view = output.inner_rect.height();
        let at_bottom = output.state.clamped_offset().y + view >= output.content_size.y - 4.0;
        if at_bottom {
            self.seen_lines = self.chat.appended;
        }
        let unseen = self.chat.appended.saturating_sub(self.seen_lines);
        if !at_bottom && unseen > 0 {
            let at = output.inner_rect.center_bottom() - egui::vec2(0.0, 22.0);
            let text = match unseen {
                1 => "1 new message ↓".to_owned(),
                n => format!("{n} new messages ↓"),
            };
            let button = Button::new(RichText::new(text).strong()).corner_radius(12);
            let rect = egui::Rect::from_center_size(at, egui::vec2(170.0, 26.0));
            if ui.put(rect, button).clicked() {
                self.jump_to_newest = true;
                ui.ctx().request_repaint();
            }
        }
        // Lines added at the top (an older page) keep the view where it was, from the next
        // frame (this one laid them out and found how tall they are).
        let grown = output.content_size.y - self.messages_height;
        if self.chat.prepended > 0 && grown > 0.0 {
            self.messages_scroll_to = Some(output.state.clamped_offset().y + grown);
            ui.ctx().request_repaint();
        }
        self.chat.prepended = 0;
        self.messages_height = output.content_size.y;
        // At the top of the scrollback: the page before it, while the server has more.
        if online
            && self.messages_scroll_to.is_none()
            && output.state.clamped_offset().y <= 1.0
            && let Some(room) = self.chat.want_older()
        {
            intents.push(Intent::Send(Command::Older(Some(room))));
        }
    }
}

/// A message's text, wrapped to the width there is, with its web links underlined in the link
/// colour, showing where they go on hover and opening in the browser on a click.
fn message_label(ui: &mut egui::Ui, mut job: LayoutJob, visuals: &egui::Visuals) {
    let links = crate::chat::links(&job.text);
    if links.is_empty() {
        ui.add(egui::Label::new(job).wrap());
        return;
    }
    for link in &links {
        style_range(&mut job, link.clone(), |f| {
            f.color = visuals.hyperlink_color;
            f.underline = egui::Stroke::new(1.0, visuals.hyperlink_color);
        });
    }
    job.wrap.max_width = ui.available_width();
    let text = job.text.clone();
    let galley = ui.fonts_mut(|f| f.layout_job(job));
    let response = ui.add(egui::Label::new(galley.clone()).sense(Sense::click()));
    let Some(pos) = response.hover_pos() else {
        return;
    };
    // The character under the pointer, as a byte offset into the text.
    let chars = galley.cursor_from_pos(pos - response.rect.min).index.0;
    let at = text
        .char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i);
    if let Some(link) = links.iter().find(|l| l.contains(&at)) {
        let url = &text[link.clone()];
        ui.ctx().set_cursor_icon(egui::CursorIcon::PointingHand);
        if response.clicked() {
            ui.ctx().open_url(egui::OpenUrl::new_tab(url));
        }
        response.on_hover_text(url);
    }
}

/// Changes the format of `range` (bytes of the job's text) with `change`, splitting the
/// sections it cuts across.
fn style_range(
    job: &mut LayoutJob,
    range: std::ops::Range<usize>,
    change: impl Fn(&mut TextFormat),
) {
    let mut sections = Vec::with_capacity(job.sections.len() + 2);
    for section in job.sections.drain(..) {
        let r = usize::from(section.byte_range.start)..usize::from(section.byte_range.end);
        let (start, end) = (
            range.start.clamp(r.start, r.end),
            range.end.clamp(r.start, r.end),
        );
        for (part, inside) in [
            (r.start..start, false),
            (start..end, true),
            (end..r.end, false),
        ] {
            if part.is_empty() {
                continue;
            }
            let mut piece = section.clone();
            piece.leading_space = if part.start == r.start {
                section.leading_space
            } else {
                0.0
            };
            piece.byte_range = part.start.into()..part.end.into();
            if inside {
                change(&mut piece.format);
            }
            sections.push(piece);
        }
    }
    job.sections = sections;
}

/// What can be done about a member, from their entry in the list (right click): a direct
/// message and `WHOIS` for anyone; for a room operator, also giving and taking `@` and `+`,
/// kicking (the reason is typed in the message box) and banning.
fn member_menu(
    ui: &mut egui::Ui,
    member: &Member,
    me: bool,
    operator: bool,
    intents: &mut Vec<Intent>,
) {
    let name = member.name.clone();
    let mode = |args: String| Intent::Send(Command::Mode { target: None, args });
    let mut item = |ui: &mut egui::Ui, label: &str, intent: Intent| {
        if ui.button(label).clicked() {
            intents.push(intent);
            ui.close();
        }
    };
    if !me {
        item(
            ui,
            "Send a direct message",
            Intent::Prefill(format!("/msg {name} ")),
        );
    }
    item(
        ui,
        "Who is this?",
        Intent::Send(Command::Whois(name.clone())),
    );
    if !operator {
        return;
    }
    ui.separator();
    if member.is_operator() {
        item(ui, "Remove operator", mode(format!("-o {name}")));
    } else {
        item(ui, "Make operator", mode(format!("+o {name}")));
    }
    if member.is_voiced() {
        item(ui, "Take voice", mode(format!("-v {name}")));
    } else {
        item(ui, "Give voice", mode(format!("+v {name}")));
    }
    if !me {
        item(ui, "Kick…", Intent::Prefill(format!("/kick {name} ")));
        item(ui, "Ban", mode(format!("+b {}", ban_mask(&name))));
    }
}

/// One line of a small form under the room bar: a labelled field, its button, and Cancel.
/// `Some(true)` when submitted (the button, or Enter in the field, while `valid` holds for the
/// text), `Some(false)` when cancelled. The field takes the focus when `focus` is set (the form
/// just opened).
#[allow(clippy::too_many_arguments)]
fn form_row(
    ui: &mut egui::Ui,
    label: &str,
    text: &mut String,
    hint: &str,
    width: f32,
    button: &str,
    valid: impl Fn(&str) -> bool,
    focus: &mut bool,
) -> Option<bool> {
    ui.horizontal(|ui| {
        // The field's id from its label, not its place: the rows above it come and go.
        let salt = label;
        let label = ui.label(label);
        let edit = ui
            .add(
                TextEdit::singleline(text)
                    .id_salt(salt)
                    .hint_text(hint)
                    .desired_width(width),
            )
            .labelled_by(label.id);
        if std::mem::take(focus) {
            edit.request_focus();
        }
        let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
        let ok = valid(text);
        let clicked = ui.add_enabled(ok, Button::new(button)).clicked();
        if ok && (entered || clicked) {
            Some(true)
        } else if ui.button("Cancel").clicked() {
            Some(false)
        } else {
            None
        }
    })
    .inner
}
