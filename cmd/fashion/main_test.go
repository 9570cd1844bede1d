package main

import (
	"os"
	"testing"
)

// mainEnv makes the test binary behave as the fashion command, so a test
// can run it as a separate process (for instance as another user) without
// building it again.
const mainEnv = "FASHION_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(runWithSignals(os.Args[1:]))
	}
	os.Exit(m.Run())
}
