// Decodes logfmt on stdin with go-logfmt (the decoder of Go kit's logfmt, which node_exporter's
// logs are written in) and prints each record as a JSON list of [key, value] pairs, one per
// line; a syntax error is printed as {"error": "..."} and ends the run.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/go-logfmt/logfmt"
)

func main() {
	dec := logfmt.NewDecoder(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for dec.ScanRecord() {
		record := [][2]string{}
		for dec.ScanKeyval() {
			record = append(record, [2]string{string(dec.Key()), string(dec.Value())})
		}
		if dec.Err() != nil {
			break
		}
		enc.Encode(record)
	}
	if err := dec.Err(); err != nil {
		enc.Encode(map[string]string{"error": fmt.Sprint(err)})
	}
}
