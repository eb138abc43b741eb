// Package scheduler makes placement decisions: an inventory snapshot in, a
// choice out. No I/O and no clock, so every decision is cheap to test.
package scheduler
