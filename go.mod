module github.com/flashvisor/flashvisor

go 1.26

require github.com/google/go-cmp v0.7.0
