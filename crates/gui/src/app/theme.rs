//! How the window looks beyond egui's defaults: a colour per name and the font fallbacks.

use eframe::egui::{self, Color32};

use crate::chat;

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
