package main

import (
	"fmt"
	"io"
	"os"

	"github.com/sortie-dev/sortie/identity"
)

// printAdminCredential tells the operator where the admin credential is, truthfully on every
// replica: a replica that did not bootstrap the store points at the file the first start
// wrote, on the machine it ran on, not at a file in its own data directory that never
// existed.
func printAdminCredential(w io.Writer, boot identity.BootstrapResult, host string) {
	switch {
	case boot.Created:
		fmt.Fprintf(w, "Created organization \"default\", environment \"default\", an admin credential and the console user %q (shown once, also saved to %s):\n  client id:     %s\n  client secret: %s\n  console login: %s\n  password:      %s\n",
			boot.Admin.AdminLogin, boot.Path, boot.Admin.ClientID, boot.Admin.ClientSecret, boot.Admin.AdminLogin, boot.Admin.AdminPassword)
	case boot.Path == "":
		fmt.Fprintln(w, "Admin credential: written by the first start, to admin-credentials.json in its --data-dir (this store does not record on which machine).")
	case boot.Host != "" && boot.Host != host:
		fmt.Fprintf(w, "Admin credential: see %s on %s (written by the first start there; this replica has no copy).\n", boot.Path, boot.Host)
	default:
		if _, err := os.Stat(boot.Path); err != nil {
			fmt.Fprintf(w, "Admin credential: the first start wrote it to %s, which is gone; its secret was shown only then.\n", boot.Path)
			return
		}
		fmt.Fprintf(w, "Admin credential: see %s (written by the first start).\n", boot.Path)
	}
}

// printListening says where this process listens and, when it differs, the public URL that
// clients use (the tokens' issuer, shared by replicas behind one load balancer), and where
// the console is.
func printListening(w io.Writer, listenURL, publicURL string) {
	if listenURL == publicURL {
		fmt.Fprintf(w, "Sortie is listening on %s (API docs at %s/docs)\n", listenURL, publicURL)
	} else {
		fmt.Fprintf(w, "Sortie is listening on %s (public URL %s, API docs at %s/docs)\n", listenURL, publicURL, publicURL)
	}
	fmt.Fprintf(w, "Console: %s/console/\n", publicURL)
}
