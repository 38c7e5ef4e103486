// Package fuzz holds run-one.sh, the runner make fuzz uses for each fuzz
// target, and its test.
package fuzz
