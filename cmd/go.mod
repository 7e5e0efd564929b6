module github.com/herald-health/herald/cmd

go 1.26.8
