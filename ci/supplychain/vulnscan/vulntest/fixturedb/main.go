// Command fixturedb writes a FIXTURE grype vulnerability database for tests: made-up
// advisories, read as a JSON array of vulntest.Advisory from stdin, never real data.
// The root module's end-to-end tests run it (go run) to turn supplychain.vulnerabilities
// red on the real images.
//
//	echo '[{"ID":"CVE-2099-0001","Ecosystem":"python","Package":"fastapi","Constraint":"< 999","FixedIn":"999","Severity":"high"}]' |
//	  go run ./vulnscan/vulntest/fixturedb DIR
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/kidney-genetics/kidney-genetics-db/ci/supplychain/vulnscan/vulntest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: fixturedb DIR < advisories.json (a FIXTURE database for tests)")
		os.Exit(2)
	}
	var adv []vulntest.Advisory
	if err := json.NewDecoder(os.Stdin).Decode(&adv); err != nil {
		fmt.Fprintf(os.Stderr, "fixturedb: advisories on stdin: %v\n", err)
		os.Exit(2)
	}
	if err := vulntest.Write(os.Args[1], adv...); err != nil {
		fmt.Fprintf(os.Stderr, "fixturedb: %v\n", err)
		os.Exit(1)
	}
}
