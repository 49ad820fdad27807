// RUN: %python %S/mutate.py %attn_src/examples attn-opt

// Robustness of the parser and the verifiers: mutate.py applies 300 seeded
// mutations (delete, duplicate or swap tokens, truncate) to the examples and
// checks that attn-opt never crashes or hangs on them, that every rejection
// comes with an "error:" diagnostic, and that whatever it accepts prints back
// to IR it accepts again.
