//! Numbers written into text digit by digit, where a page or a log line is built once per
//! request: `write!` goes through core::fmt's generic machinery, which showed up in the
//! benchmark's profiles (the QR page's path, the access log line).

/// `n` in decimal.
pub fn push(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Digits only: always UTF-8.
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// `n` with leading zeros to `width` digits (`n` must fit).
pub fn push_padded(out: &mut String, n: u64, width: u32) {
    let mut div = 10u64.pow(width.saturating_sub(1));
    while div > 0 {
        out.push((b'0' + (n / div % 10) as u8) as char);
        div /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_display_prints_them() {
        for n in [0u64, 7, 10, 99, 100, 181, 4096, 65_535, u64::MAX] {
            let mut s = String::from("x");
            push(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
        for (n, width, want) in [
            (0, 6, "000000"),
            (42, 6, "000042"),
            (999_999, 6, "999999"),
            (7, 3, "007"),
        ] {
            let mut s = String::new();
            push_padded(&mut s, n, width);
            assert_eq!(s, want);
        }
    }
}
