# Route53: the environment's host name on the ALB, the static-assets host on CloudFront,
# and a health check of the shop's readiness through the public name.

# IPv4 only: the ALB is not dual-stack (the VPC has no IPv6 ranges).
resource "aws_route53_record" "app" {
  zone_id = var.zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = var.alb_dns_name
    zone_id                = var.alb_zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "cdn" {
  for_each = toset(["A", "AAAA"])

  zone_id = var.zone_id
  name    = var.cdn_domain_name
  type    = each.value

  alias {
    name                   = var.cdn_target_domain_name
    zone_id                = var.cdn_target_zone_id
    evaluate_target_health = false
  }
}

resource "aws_route53_health_check" "app" {
  fqdn              = var.domain_name
  type              = "HTTPS"
  port              = 443
  resource_path     = "/readyz"
  request_interval  = 30
  failure_threshold = 3
  measure_latency   = true
  enable_sni        = true

  tags = merge(var.tags, { Component = "dns", Name = "${var.domain_name}-readyz" })
}
