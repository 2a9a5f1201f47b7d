//! The connect screen: the server address and name form, with each field's error beside it.
//! It only records intents; `mod.rs` carries them out.

use eframe::egui::{self, Align, Button, CentralPanel, Key, Layout, RichText, TextEdit};

use super::{ConnState, Intent, ParlaApp};

impl ParlaApp {
    pub(super) fn connect_screen(&mut self, ui: &mut egui::Ui, intents: &mut Vec<Intent>) {
        let connecting = matches!(self.conn, ConnState::Connecting { .. });
        let registering = matches!(self.conn, ConnState::Registering { .. });
        let busy = connecting || (registering && self.name_pending);
        CentralPanel::default().show(ui, |ui| {
            ui.vertical_centered(|ui| {
                ui.add_space((ui.available_height() * 0.12).min(80.0));
                ui.label(RichText::new("Parla").size(34.0).strong());
                ui.weak("Chat with the people on a Parla or IRC server");
                ui.add_space(16.0);
                let width = 380.0f32.min(ui.available_width() - 16.0);
                egui::Frame::group(ui.style())
                    .inner_margin(16)
                    .corner_radius(8)
                    .show(ui, |ui| {
                        ui.set_width(width);
                        ui.with_layout(Layout::top_down(Align::Min), |ui| {
                            self.connect_form(ui, intents, busy, connecting, registering);
                        });
                    });
            });
        });
    }

    fn connect_form(
        &mut self,
        ui: &mut egui::Ui,
        intents: &mut Vec<Intent>,
        busy: bool,
        connecting: bool,
        registering: bool,
    ) {
        let enter = ui.input(|i| i.key_pressed(Key::Enter));
        let label = ui.label("Server address");
        let addr_edit = ui
            .add_enabled(
                !busy && !registering,
                TextEdit::singleline(&mut self.addr_text)
                    .id_salt("address")
                    .hint_text("host, host:port or [::1]:8080")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
        if let Some(err) = &self.addr_error {
            ui.colored_label(ui.visuals().error_fg_color, err);
        } else if let ConnState::Registering { server } = &self.conn {
            ui.weak(format!("Connected to {server}"));
        } else {
            ui.weak("The port is 8080 unless you give one.");
        }
        ui.add_space(8.0);
        let label = ui.label("Your name");
        let name_edit = ui
            .add_enabled(
                !busy,
                TextEdit::singleline(&mut self.name_text)
                    .id_salt("name")
                    .hint_text("how others will see you")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
        if let Some(err) = &self.name_error {
            ui.colored_label(ui.visuals().error_fg_color, err);
        }
        if self.focus_pending {
            self.focus_pending = false;
            // The field to fix first: the address after a failed connection (or when empty),
            // else the name.
            let addr_first = self.addr_text.trim().is_empty()
                || self.addr_error.is_some()
                || self.connect_error.is_some();
            if addr_first && !registering {
                addr_edit.request_focus();
            } else {
                name_edit.request_focus();
            }
        }
        if (addr_edit.lost_focus() || name_edit.lost_focus()) && enter && !busy {
            intents.push(Intent::Submit);
        }
        ui.add_space(12.0);
        ui.horizontal(|ui| {
            let text = if registering { "Join" } else { "Connect" };
            if ui
                .add_enabled(!busy, Button::new(text).min_size(egui::vec2(96.0, 0.0)))
                .clicked()
            {
                intents.push(Intent::Submit);
            }
            if busy {
                ui.spinner();
                match &self.conn {
                    ConnState::Connecting { addr } => ui.label(format!("Connecting to {addr}…")),
                    _ => ui.label("Asking the server for your name…"),
                };
            }
            if connecting && ui.button("Cancel").clicked() {
                intents.push(Intent::Cancel);
            }
        });
        if let Some(err) = &self.connect_error {
            ui.add_space(8.0);
            ui.colored_label(ui.visuals().error_fg_color, format!("⚠ {err}"));
        }
    }
}
