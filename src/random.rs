//! Random bytes from the system source, for every secret and unguessable token wxgate
//! makes (session ids, states, nonces, generated secrets).

/// `n` bytes from the system random source. Without a working one no secret can be
/// made, so stopping is right.
#[allow(clippy::expect_used)]
pub fn bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).expect("system random source");
    b
}
