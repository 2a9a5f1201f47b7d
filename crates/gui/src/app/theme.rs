//! How the window looks beyond egui's defaults: a colour per name, received text's IRC styles,
//! and the font fallbacks.

use eframe::egui::{self, Color32, FontId, Stroke, TextFormat, Visuals, text::LayoutJob};

use crate::{chat, safe};

/// IRC's 16 colours (0 white … 15 light grey), as mIRC and most clients draw them.
const IRC_COLOURS: [Color32; 16] = [
    Color32::from_rgb(255, 255, 255),
    Color32::from_rgb(0, 0, 0),
    Color32::from_rgb(0, 0, 127),
    Color32::from_rgb(0, 147, 0),
    Color32::from_rgb(255, 0, 0),
    Color32::from_rgb(127, 0, 0),
    Color32::from_rgb(156, 0, 156),
    Color32::from_rgb(252, 127, 0),
    Color32::from_rgb(255, 255, 0),
    Color32::from_rgb(0, 252, 0),
    Color32::from_rgb(0, 147, 147),
    Color32::from_rgb(0, 255, 255),
    Color32::from_rgb(0, 0, 252),
    Color32::from_rgb(255, 0, 255),
    Color32::from_rgb(127, 127, 127),
    Color32::from_rgb(210, 210, 210),
];

/// Appends received `text` (in [`safe::formatted`] form: IRC styles kept, nothing else that could
/// act) to `job`, each span drawn in `base` with its style over it: colours from IRC's palette,
/// italics, underline, strikethrough, monospace, reverse video, and bold as the theme's strong
/// text colour (egui's fonts have no bold face).
pub(super) fn append_styled(job: &mut LayoutJob, text: &str, base: &TextFormat, visuals: &Visuals) {
    for span in safe::spans(text) {
        let s = span.style;
        let mut f = base.clone();
        if s.bold {
            f.color = visuals.strong_text_color();
        }
        f.italics |= s.italic;
        if s.monospace {
            f.font_id = FontId::monospace(f.font_id.size);
        }
        if let Some(fg) = s.fg {
            f.color = IRC_COLOURS[usize::from(fg)];
        }
        if let Some(bg) = s.bg {
            f.background = IRC_COLOURS[usize::from(bg)];
        }
        if s.reverse {
            let behind = match f.background {
                Color32::TRANSPARENT => visuals.panel_fill,
                bg => bg,
            };
            (f.background, f.color) = (f.color, behind);
        }
        if s.underline {
            f.underline = Stroke::new(1.0, f.color);
        }
        if s.strike {
            f.strikethrough = Stroke::new(1.0, f.color);
        }
        job.append(&span.text, 0.0, f);
    }
}

/// A name's colour: a stable pick from a palette readable on the theme's background.
pub fn name_colour(name: &str, dark: bool) -> Color32 {
    // Twelve hues around the colour wheel, light on dark and dark on light.
    const DARK: [Color32; 12] = [
        Color32::from_rgb(255, 120, 120),
        Color32::from_rgb(255, 165, 85),
        Color32::from_rgb(230, 210, 90),
        Color32::from_rgb(165, 220, 90),
        Color32::from_rgb(100, 210, 120),
        Color32::from_rgb(80, 210, 185),
        Color32::from_rgb(90, 200, 245),
        Color32::from_rgb(120, 160, 255),
        Color32::from_rgb(165, 140, 255),
        Color32::from_rgb(205, 130, 250),
        Color32::from_rgb(245, 120, 210),
        Color32::from_rgb(200, 200, 200),
    ];
    const LIGHT: [Color32; 12] = [
        Color32::from_rgb(200, 40, 40),
        Color32::from_rgb(190, 90, 0),
        Color32::from_rgb(140, 115, 0),
        Color32::from_rgb(80, 125, 10),
        Color32::from_rgb(30, 130, 50),
        Color32::from_rgb(0, 125, 110),
        Color32::from_rgb(0, 115, 170),
        Color32::from_rgb(40, 80, 200),
        Color32::from_rgb(95, 60, 200),
        Color32::from_rgb(135, 40, 180),
        Color32::from_rgb(180, 30, 130),
        Color32::from_rgb(90, 90, 90),
    ];
    let palette = if dark { &DARK } else { &LIGHT };
    palette[chat::colour_index(name, palette.len())]
}

/// egui's fonts, with Hack (the monospace font) as a fallback for the proportional text too:
/// Ubuntu Light has no arrows or geometric shapes (→ ← ●), which the join lines and the status
/// bar use. Emoji come from the monochrome emoji fonts (the `monochrome_emoji_fonts` feature).
pub(super) fn install_fonts(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    if let Some(family) = fonts.families.get_mut(&egui::FontFamily::Proportional) {
        family.insert(1.min(family.len()), "Hack".to_owned());
    }
    ctx.set_fonts(fonts);
}
