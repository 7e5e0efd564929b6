module github.com/herald-health/herald/services/notification

go 1.26.8
