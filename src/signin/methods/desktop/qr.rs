//! QR codes for the sign-in pages, drawn as inline SVG.
//!
//! The `qrcode` crate encodes the data and draws the symbol; choosing the mask and
//! writing the SVG happen here. The crate scores the eight masked candidates through
//! per-module accessors and a boxed closure per position, which made its encoder
//! about 0.4 ms of CPU per QR page; the QR page is what every browser outside WeChat
//! gets before signing in, robots included. The scoring below is the crate's (ISO/IEC
//! 18004 §7.8.3, as the crate implements it) on rows and columns held as bit sets, so
//! the chosen symbol is the same one (a test compares them module by module).

use std::fmt::Write as _;

use qrcode::canvas::{Canvas, MaskPattern};
use qrcode::types::{Color, EcLevel};

use crate::decimal;

/// Medium error correction: survives a glare or a crease, keeps the symbol small.
const EC_LEVEL: EcLevel = EcLevel::M;
/// Light modules around the symbol, as the standard asks.
const QUIET_ZONE: usize = 4;
/// The symbol is drawn at least this many CSS pixels wide: big enough for a phone
/// held at arm's length in front of a laptop screen.
const MIN_PIXELS: usize = 220;

const MASKS: [MaskPattern; 8] = [
    MaskPattern::Checkerboard,
    MaskPattern::HorizontalLines,
    MaskPattern::VerticalLines,
    MaskPattern::DiagonalLines,
    MaskPattern::LargeCheckerboard,
    MaskPattern::Fields,
    MaskPattern::Diamonds,
    MaskPattern::Meadow,
];

/// A QR symbol: `width` × `width` modules, row by row, `true` for dark.
#[derive(Debug, PartialEq, Eq)]
pub struct Symbol {
    pub width: usize,
    pub dark: Vec<bool>,
}

impl Symbol {
    fn at(&self, x: usize, y: usize) -> bool {
        self.dark[y * self.width + x]
    }
}

/// Encodes `data` (byte, alphanumeric or numeric segments, the smallest version that
/// fits); None when it is too long for any QR version.
pub fn encode(data: &[u8]) -> Option<Symbol> {
    match encode_with_mask(data) {
        Some((_, symbol)) => Some(symbol),
        // Wider than the bit sets hold (version 28 and up, over 1 KB of data): the
        // crate's own mask choice.
        None => encode_by_crate(data),
    }
}

/// The `qrcode` crate's own encoder, mask choice included.
fn encode_by_crate(data: &[u8]) -> Option<Symbol> {
    let code = qrcode::QrCode::with_error_correction_level(data, EC_LEVEL).ok()?;
    Some(Symbol {
        width: code.width(),
        dark: code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect(),
    })
}

/// Rows and columns are scored as `u128` bit sets.
const MAX_WIDTH: usize = 128;

/// The symbol and which of `MASKS` it uses; None when it does not fit or is wider
/// than `MAX_WIDTH`.
fn encode_with_mask(data: &[u8]) -> Option<(usize, Symbol)> {
    let bits = qrcode::bits::encode_auto(data, EC_LEVEL).ok()?;
    let version = bits.version();
    let width = usize::try_from(version.width()).ok()?;
    if width > MAX_WIDTH {
        return None;
    }
    let (codewords, ec) =
        qrcode::ec::construct_codewords(&bits.into_bytes(), version, EC_LEVEL).ok()?;
    let mut canvas = Canvas::new(version, EC_LEVEL);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&codewords, &ec);
    MASKS
        .iter()
        .map(|&mask| {
            let mut masked = canvas.clone();
            masked.apply_mask(mask);
            Symbol {
                width,
                dark: masked
                    .into_colors()
                    .into_iter()
                    .map(|c| c == Color::Dark)
                    .collect(),
            }
        })
        .enumerate()
        // The first of equally good masks, as the crate picks.
        .min_by_key(|(_, symbol)| penalty(symbol))
}

/// The mask penalty. The crate subtracts what the three finder patterns themselves
/// score (the same for every mask); this sum keeps it, which changes no choice. Each
/// row and column is a bit set (bit x = module x is dark): the per-module branches of
/// a module-by-module scan, on modules that are random by design, were mispredicted
/// about half the time.
fn penalty(s: &Symbol) -> u32 {
    let w = s.width;
    let mut rows = vec![0u128; w];
    let mut columns = vec![0u128; w];
    for (y, row) in s.dark.chunks_exact(w).enumerate() {
        for (x, &dark) in row.iter().enumerate() {
            rows[y] |= u128::from(dark) << x;
            columns[x] |= u128::from(dark) << y;
        }
    }
    let mut score = 0;
    for &line in rows.iter().chain(&columns) {
        score += line_penalty(line, w);
    }
    // Each 2×2 block of one colour, overlapping ones counted: bit x of `same` says
    // modules x and x+1 of both rows are all alike.
    let pairs = low_bits(w - 1);
    for pair in rows.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let same = !(a ^ (a >> 1)) & !(b ^ (b >> 1)) & !(a ^ b) & pairs;
        score += 3 * same.count_ones();
    }
    // Distance of the dark share from one half, in steps of 1%.
    let dark: usize = rows.iter().map(|r| r.count_ones() as usize).sum();
    let ratio = dark * 200 / (w * w);
    score + ratio.abs_diff(100) as u32
}

/// Bits 0..n set.
fn low_bits(n: usize) -> u128 {
    u128::MAX.checked_shr(128 - n as u32).unwrap_or(0)
}

/// One row or column of `w` modules: runs of five or more modules of one colour
/// (length − 2 each), and dark-light-dark×3-light-dark (what a finder pattern looks
/// like) without four light modules on both sides (40 each; outside the symbol counts
/// as light, as the bits beyond `w` are clear).
fn line_penalty(line: u128, w: usize) -> u32 {
    let mut score = 0;
    // Bit x of `changes`: module x+1 differs from module x, so a run ends at x.
    let mut changes = (line ^ (line >> 1)) & low_bits(w - 1);
    let mut start = 0;
    loop {
        let end = if changes == 0 {
            w
        } else {
            changes.trailing_zeros() as usize + 1
        };
        let run = (end - start) as u32;
        score += if run >= 5 { run - 2 } else { 0 };
        if changes == 0 {
            break;
        }
        changes &= changes - 1;
        start = end;
    }
    // Bit j of `found`: modules j..j+7 read dark, light, dark, dark, dark, light, dark.
    const FINDER: [bool; 7] = [true, false, true, true, true, false, true];
    let mut found = low_bits((w + 1).saturating_sub(7));
    for (k, dark) in FINDER.iter().enumerate() {
        let shifted = line >> k;
        found &= if *dark { shifted } else { !shifted };
    }
    while found != 0 {
        let j = found.trailing_zeros() as usize;
        found &= found - 1;
        let dark_before = line & low_bits(j) & !low_bits(j.saturating_sub(4)) != 0;
        let dark_after = line.checked_shr(j as u32 + 7).unwrap_or(0) & 0xF != 0;
        if !dark_before || !dark_after {
            score += 40;
        }
    }
    score
}

/// An inline SVG of `data`'s QR code (no external assets): one path of horizontal runs
/// in module units, scaled to at least `MIN_PIXELS`.
pub fn svg(data: &str) -> Option<String> {
    let s = encode(data.as_bytes())?;
    let side = s.width + 2 * QUIET_ZONE;
    let pixels = side * MIN_PIXELS.div_ceil(side);
    let mut out = String::with_capacity(256 + s.width * s.width * 3);
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{pixels}\" \
height=\"{pixels}\" viewBox=\"0 0 {side} {side}\" shape-rendering=\"crispEdges\">\
<rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/><path fill=\"#000\" d=\""
    );
    for y in 0..s.width {
        let mut x = 0;
        while x < s.width {
            if !s.at(x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < s.width && s.at(x, y) {
                x += 1;
            }
            // "M<x> <y>h<run>v1h-<run>z", without the formatting machinery: a QR page
            // writes a few hundred of these.
            let run = x - start;
            out.push('M');
            decimal::push(&mut out, (start + QUIET_ZONE) as u64);
            out.push(' ');
            decimal::push(&mut out, (y + QUIET_ZONE) as u64);
            out.push('h');
            decimal::push(&mut out, run as u64);
            out.push_str("v1h-");
            decimal::push(&mut out, run as u64);
            out.push('z');
        }
    }
    out.push_str("\"/></svg>");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<String> {
        let mut out = vec![
            "https://app.example.com/_wxgate/scan/s/AbCdEf0123456789xyzXYZ".to_string(),
            "http://127.0.0.1:8080/orders/42?tab=open".to_string(),
            "HELLO WORLD".to_string(),
            "0123456789".to_string(),
            "x".to_string(),
            "微信扫码登录".to_string(),
            // Larger versions: 300, 900 and (beyond the bit sets) 1,600 bytes.
            "https://app.example.com/".repeat(12) + "?",
            "0123456789abcdef".repeat(56) + "??",
            "https://app.example.com/".repeat(66) + "?",
        ];
        // Ids like the scan tickets' and URLs of every length a page may carry, so every
        // mask gets chosen somewhere.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 1..160 {
            let mut s = String::from("https://wx.example.org/_wxgate/scan/s/");
            for _ in 0..len % 48 + 1 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let c = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                    [(seed % 62) as usize];
                s.push(c as char);
            }
            if len > 48 {
                s.push_str(&"/p".repeat(len / 4));
            }
            out.push(s);
        }
        out
    }

    #[test]
    fn symbols_are_the_ones_the_qrcode_crate_draws() {
        let mut masks_seen = std::collections::HashSet::new();
        let mut widest = 0;
        for data in samples() {
            let ours = encode(data.as_bytes()).expect("fits");
            widest = widest.max(ours.width);
            assert_eq!(
                Some(ours),
                encode_by_crate(data.as_bytes()),
                "symbol for {data:?}"
            );
            if let Some((mask, _)) = encode_with_mask(data.as_bytes()) {
                masks_seen.insert(mask);
            }
        }
        assert!(
            widest > MAX_WIDTH,
            "the widest sample takes the crate's path"
        );
        // Equal symbols prove the same choice only if the choice varies.
        assert_eq!(
            masks_seen.len(),
            MASKS.len(),
            "masks chosen: {masks_seen:?}"
        );
    }

    #[test]
    fn the_svg_path_draws_exactly_the_dark_modules() {
        let data = "https://app.example.com/_wxgate/scan/s/AbCdEf0123456789xyzXYZ";
        let symbol = encode(data.as_bytes()).unwrap();
        let svg = svg(data).unwrap();
        let d = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let mut drawn = vec![false; symbol.dark.len()];
        for run in d.split('M').filter(|r| !r.is_empty()) {
            // "X Yh<len>v1h-<len>z"
            let (xy, rest) = run.split_once('h').unwrap();
            let (x, y) = xy.split_once(' ').unwrap();
            let len: usize = rest.split_once('v').unwrap().0.parse().unwrap();
            let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
            for i in 0..len {
                let cell = &mut drawn[(y - QUIET_ZONE) * symbol.width + x - QUIET_ZONE + i];
                assert!(!*cell, "a module drawn twice");
                *cell = true;
            }
        }
        assert_eq!(drawn, symbol.dark);
        let side = symbol.width + 2 * QUIET_ZONE;
        assert!(svg.contains(&format!("viewBox=\"0 0 {side} {side}\"")));
        let px: usize = svg
            .split("width=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            px >= MIN_PIXELS && px % side == 0,
            "{px} px for {side} modules"
        );
    }

    #[test]
    fn data_too_long_for_any_version_has_no_symbol() {
        assert!(encode(&vec![b'x'; 4000]).is_none());
        assert!(svg(&"x".repeat(4000)).is_none());
    }
}
