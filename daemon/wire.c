/**
 * \file wire.c
 * DNS wire-format helpers shared by the query path, the cache and the
 * upstream code.  Everything here bounds-checks against the message
 * length: input comes straight from the network.
 */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>

#include "wire.h"

int wire_name_read(const uint8_t *msg, size_t len, size_t *pos, uint8_t *out)
{
	size_t p = *pos, n = 0;
	size_t end = 0;     /* where the name ends in the message; 0 until a pointer */
	int hops = 0;

	for (;;) {
		if (p >= len)
			return -1;
		uint8_t c = msg[p];
		if ((c & 0xc0) == 0xc0) {
			if (p + 1 >= len || ++hops > 64)
				return -1;
			if (end == 0)
				end = p + 2;
			size_t target = (size_t)((c & 0x3f) << 8 | msg[p + 1]);
			/* Only backwards, and never into the header: a forward
			 * pointer is never needed and allows loops, and the
			 * header holds no name. */
			if (target >= p || target < WIRE_HDR)
				return -1;
			p = target;
			continue;
		}
		if (c & 0xc0)
			return -1; /* extended label types are obsolete */
		if (n + c + 1 > WIRE_NAME_MAX || p + c + 1 > len)
			return -1;
		if (out) {
			out[n] = c;
			for (size_t i = 1; i <= c; i++) {
				uint8_t b = msg[p + i];
				out[n + i] = (b >= 'A' && b <= 'Z') ? (uint8_t)(b + 32) : b;
			}
		}
		n += (size_t)c + 1;
		p += (size_t)c + 1;
		if (c == 0)
			break;
	}
	*pos = end ? end : p;
	return (int)n;
}

void wire_name_lower(uint8_t *name, size_t len)
{
	size_t i = 0;

	while (i < len && name[i] != 0) {
		size_t l = name[i];
		for (size_t j = i + 1; j <= i + l && j < len; j++)
			if (name[j] >= 'A' && name[j] <= 'Z')
				name[j] = (uint8_t)(name[j] + 32);
		i += l + 1;
	}
}

int wire_name_labels(const uint8_t *name)
{
	int n = 0;

	while (*name) {
		n++;
		name += *name + 1;
	}
	return n;
}

bool wire_name_under(const uint8_t *name, size_t len, const uint8_t *zone, size_t zlen)
{
	size_t pos = 0;

	/* Only where a label starts may the zone start: walk the labels. */
	while (pos < len && len - pos >= zlen) {
		if (len - pos == zlen) {
			for (size_t i = 0; i < zlen; i++) {
				uint8_t a = name[pos + i], b = zone[i];
				if (a >= 'A' && a <= 'Z')
					a = (uint8_t)(a + 32);
				if (b >= 'A' && b <= 'Z')
					b = (uint8_t)(b + 32);
				if (a != b)
					return false;
			}
			return true;
		}
		if (name[pos] == 0)
			break;
		pos += 1u + name[pos];
	}
	return false;
}

void wire_name_str(const uint8_t *name, char *buf)
{
	char *o = buf;

	if (*name == 0) {
		strcpy(buf, ".");
		return;
	}
	while (*name) {
		uint8_t l = *name++;
		for (uint8_t i = 0; i < l; i++) {
			uint8_t c = *name++;
			if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '*') {
				*o++ = (char)c;
			} else if (c == '.' || c == '\\') {
				*o++ = '\\';
				*o++ = (char)c;
			} else {
				o += sprintf(o, "\\%03u", c);
			}
		}
		*o++ = '.';
	}
	*o = '\0';
}

int wire_name_from_str(const char *text, uint8_t *out)
{
	ldns_rdf *rdf = NULL;
	int n;

	if (text == NULL || *text == '\0')
		return -1;
	if (ldns_str2rdf_dname(&rdf, text) != LDNS_STATUS_OK)
		return -1;
	n = (int)ldns_rdf_size(rdf);
	if (n < 1 || n > WIRE_NAME_MAX) {
		ldns_rdf_deep_free(rdf);
		return -1;
	}
	memcpy(out, ldns_rdf_data(rdf), (size_t)n);
	ldns_rdf_deep_free(rdf);
	wire_name_lower(out, (size_t)n);
	return n;
}

const char *wire_type_str(uint16_t type, char *buf)
{
	const ldns_rr_descriptor *d = ldns_rr_descript(type);

	if (d && d->_name)
		return d->_name;
	snprintf(buf, 16, "TYPE%u", type);
	return buf;
}

int wire_rr_next(const uint8_t *msg, size_t len, size_t *pos, struct wire_rr *rr)
{
	size_t p = *pos;

	rr->owner = p;
	if (wire_name_read(msg, len, &p, NULL) < 0 || p + 10 > len)
		return -1;
	rr->fixed = p;
	rr->type = wire_get16(msg + p);
	rr->rclass = wire_get16(msg + p + 2);
	rr->ttl = wire_get32(msg + p + 4);
	rr->rdlen = wire_get16(msg + p + 8);
	rr->rdata = p + 10;
	if (rr->rdata + rr->rdlen > len)
		return -1;
	*pos = rr->rdata + rr->rdlen;
	return 0;
}

/**
 * Walk the records from pos to the end of the additional section and read
 * the OPT there into q (RFC 6891 6.1.1: one OPT, owned by the root).  q's
 * EDNS fields are set only from an OPT read whole, so that even a FORMERR
 * echoes only what the client really sent.
 * @return 0, or -1 when a record does not fit or the OPT is not as 6.1.1 says
 */
static int read_edns(const uint8_t *msg, size_t len, size_t pos, struct wire_query *q)
{
	struct wire_rr rr;
	unsigned rrs = (unsigned)wire_get16(msg + 6) + wire_get16(msg + 8);

	for (unsigned i = 0; i < rrs; i++)
		if (wire_rr_next(msg, len, &pos, &rr) < 0)
			return -1;
	rrs = wire_get16(msg + 10);
	for (unsigned i = 0; i < rrs; i++) {
		if (wire_rr_next(msg, len, &pos, &rr) < 0)
			return -1;
		if (rr.type != LDNS_RR_TYPE_OPT)
			continue;
		if (q->edns || msg[rr.owner] != 0)
			return -1;
		/* Options are walked only to check they fit; unknown ones are ignored. */
		for (size_t o = rr.rdata; o < rr.rdata + rr.rdlen;) {
			if (o + 4 > rr.rdata + rr.rdlen ||
			    o + 4 + wire_get16(msg + o + 2) > rr.rdata + rr.rdlen)
				return -1;
			o += 4 + (size_t)wire_get16(msg + o + 2);
		}
		q->edns = true;
		q->edns_size = rr.rclass < WIRE_UDP_PLAIN ? WIRE_UDP_PLAIN : rr.rclass;
		q->edns_version = (uint8_t)(rr.ttl >> 16);
		q->edns_do = (rr.ttl & 0x8000) != 0;
	}
	return 0;
}

/** Read the question at WIRE_HDR into q.  @return the offset past it, or 0 */
static size_t read_question(const uint8_t *msg, size_t len, struct wire_query *q)
{
	size_t pos = WIRE_HDR;
	/* The question comes first, so a pointer in it can only be bogus:
	 * its name must take exactly its own bytes. */
	int n = wire_name_read(msg, len, &pos, q->qname);

	if (n < 0 || pos - WIRE_HDR != (size_t)n || pos + 4 > len)
		return 0;
	memcpy(q->qname_raw, msg + WIRE_HDR, (size_t)n);
	q->qname_len = (uint16_t)n;
	q->qtype = wire_get16(msg + pos);
	q->qclass = wire_get16(msg + pos + 2);
	pos += 4;
	q->qend = (uint16_t)pos;
	q->has_question = true;
	return pos;
}

enum wire_query_status wire_query_parse(const uint8_t *msg, size_t len,
					struct wire_query *q)
{
	size_t pos;

	q->has_question = false;
	q->edns = false;
	q->edns_do = false;
	q->edns_version = 0;
	q->edns_size = WIRE_UDP_PLAIN;
	if (len < WIRE_HDR)
		return WIRE_Q_DROP;
	q->id = wire_get16(msg);
	q->flags = wire_get16(msg + 2);
	if (q->flags & WIRE_QR)
		return WIRE_Q_DROP;
	unsigned qdcount = wire_get16(msg + 4);
	if (WIRE_OPCODE(q->flags) != LDNS_PACKET_QUERY) {
		/* The opcode is judged before the counts (RFC 1035 4.1.1, RFC
		 * 6895 2.2): NOTIMP whatever follows.  What can be read of the
		 * question and the OPT is read, so the reply echoes them. */
		if (qdcount == 1 && (pos = read_question(msg, len, q)) != 0)
			(void)read_edns(msg, len, pos, q);
		else if (qdcount == 0)
			(void)read_edns(msg, len, WIRE_HDR, q);
		return WIRE_Q_NOTIMP;
	}
	if (qdcount != 1) {
		/* A FORMERR still carries OPT when the query did (RFC 6891 7):
		 * skip the questions to find it. */
		pos = WIRE_HDR;
		for (unsigned i = 0; i < qdcount; i++) {
			if (wire_name_read(msg, len, &pos, NULL) < 0 || pos + 4 > len)
				return WIRE_Q_FORMERR;
			pos += 4;
		}
		(void)read_edns(msg, len, pos, q);
		return WIRE_Q_FORMERR;
	}
	if ((pos = read_question(msg, len, q)) == 0 || read_edns(msg, len, pos, q) < 0)
		return WIRE_Q_FORMERR;
	if (q->edns && q->edns_version > 0)
		return WIRE_Q_BADVERS;
	return WIRE_Q_OK;
}

size_t wire_reply_begin(uint8_t *out, const struct wire_query *q, uint16_t rcode)
{
	uint16_t flags = WIRE_QR | (q->flags & (0x7800 | WIRE_RD));

	/* RA and CD belong to QUERY; another opcode's reply leaves them clear. */
	if (WIRE_OPCODE(q->flags) == LDNS_PACKET_QUERY)
		flags |= WIRE_RA | (q->flags & WIRE_CD);

	wire_put16(out, q->id);
	wire_put16(out + 2, (uint16_t)(flags | (rcode & 0xf)));
	memset(out + 4, 0, 8);
	if (!q->has_question)
		return WIRE_HDR;
	wire_put16(out + 4, 1);
	memcpy(out + WIRE_HDR, q->qname_raw, q->qname_len);
	wire_put16(out + WIRE_HDR + q->qname_len, q->qtype);
	wire_put16(out + WIRE_HDR + q->qname_len + 2, q->qclass);
	return WIRE_HDR + q->qname_len + 4u;
}

void wire_count_inc(uint8_t *msg, size_t off)
{
	wire_put16(msg + off, (uint16_t)(wire_get16(msg + off) + 1));
}

size_t wire_opt_append(uint8_t *msg, size_t len, size_t max, uint8_t ext_rcode,
		       bool do_bit, uint16_t ede_code, const char *ede_text)
{
	size_t tlen = ede_text ? strlen(ede_text) : 0;
	size_t rdlen = ede_text ? 4 + 2 + tlen : 0;
	uint8_t *p = msg + len;

	if (len + 11 + rdlen > max)
		return 0;
	p[0] = 0; /* root owner */
	wire_put16(p + 1, LDNS_RR_TYPE_OPT);
	wire_put16(p + 3, WIRE_EDNS_SIZE);
	p[5] = ext_rcode;
	p[6] = 0; /* version */
	wire_put16(p + 7, do_bit ? 0x8000 : 0);
	wire_put16(p + 9, (uint16_t)rdlen);
	if (ede_text) {
		wire_put16(p + 11, LDNS_EDNS_EDE);
		wire_put16(p + 13, (uint16_t)(2 + tlen));
		wire_put16(p + 15, ede_code);
		memcpy(p + 17, ede_text, tlen);
	}
	wire_count_inc(msg, 10);
	return len + 11 + rdlen;
}
