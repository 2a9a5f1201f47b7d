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
/// text colour, spaced out a little (egui's fonts have no bold face). A control character
/// received (already a control picture, `␛`, which egui's fonts lack) is drawn in caret
/// notation (`^[`), dimmed: seen, never obeyed.
pub(super) fn append_styled(job: &mut LayoutJob, text: &str, base: &TextFormat, visuals: &Visuals) {
    for span in safe::spans(text) {
        let s = span.style;
        let mut f = base.clone();
        if s.bold {
            f.color = visuals.strong_text_color();
            f.extra_letter_spacing = 1.0;
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
        let mut rest = span.text.as_str();
        while let Some(at) = rest.find(is_control_picture) {
            job.append(&rest[..at], 0.0, f.clone());
            let picture = rest[at..].chars().next().unwrap_or('\u{2400}');
            let mut dim = f.clone();
            dim.color = visuals.weak_text_color();
            job.append(&caret(picture), 0.0, dim);
            rest = &rest[at + picture.len_utf8()..];
        }
        job.append(rest, 0.0, f);
    }
}

/// A control picture (U+2400–U+2421): how [`safe`] shows a received control character.
fn is_control_picture(c: char) -> bool {
    ('\u{2400}'..='\u{2421}').contains(&c)
}

/// The caret notation of the control character a control picture stands for: `␛` → `^[`,
/// `␀` → `^@`, `␡` → `^?` (and `␠`, the picture for a space, → `^ `).
fn caret(picture: char) -> String {
    match picture as u32 - 0x2400 {
        0x21 => "^?".to_owned(),
        0x20 => "^ ".to_owned(),
        n => format!("^{}", char::from_u32(0x40 + n).unwrap_or('?')),
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
    // egui's own fonts have Latin, Greek, Cyrillic and emoji, but no Chinese, Japanese or
    // Korean: the first CJK font this system has comes last in every family, for what the
    // others lack (PARLA_FONT names another file to use so).
    let wanted = std::env::var_os("PARLA_FONT").map(std::path::PathBuf::from);
    let found = wanted
        .into_iter()
        .chain(CJK_FONTS.iter().map(std::path::PathBuf::from))
        .find_map(|path| Some((std::fs::read(&path).ok()?, path)));
    if let Some((bytes, path)) = found {
        tracing::debug!(font = %path.display(), "fallback font for CJK");
        fonts.font_data.insert(
            "fallback".to_owned(),
            std::sync::Arc::new(egui::FontData::from_owned(bytes)),
        );
        for family in fonts.families.values_mut() {
            family.push("fallback".to_owned());
        }
    } else {
        tracing::info!(
            "no CJK font found (install fonts-noto-cjk or fonts-droid-fallback, or set PARLA_FONT): Chinese, Japanese and Korean text will show as boxes"
        );
    }
    ctx.set_fonts(fonts);
}

/// Where Linux distributions put a font with the CJK characters, the most complete first.
const CJK_FONTS: &[&str] = &[
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_pictures_are_drawn_in_caret_notation() {
        assert_eq!(caret('\u{241b}'), "^[");
        assert_eq!(caret('\u{2400}'), "^@");
        assert_eq!(caret('\u{2407}'), "^G");
        assert_eq!(caret('\u{2421}'), "^?");
        let mut job = LayoutJob::default();
        let visuals = Visuals::dark();
        let base = TextFormat::simple(FontId::proportional(14.0), visuals.text_color());
        append_styled(&mut job, &safe::formatted("a\x1b[2J\x02b"), &base, &visuals);
        assert_eq!(job.text, "a^[[2Jb");
        assert!(!job.text.chars().any(char::is_control));
    }
}
