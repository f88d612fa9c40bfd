/**
 * \file scrub.c
 * The answer scrubber.  An upstream (or anything spoofing one) may add
 * records that have nothing to do with the question: an A record for a
 * storage account in the answer section (musl's resolver takes every A
 * record there, whatever its owner), an NS for someone else's zone with
 * glue.  A stub forwarder has no use for them, so they go before the
 * answer is checked, cached or sent.
 *
 * The message is read in a few passes (it is small, and parsing in place
 * needs no allocation): the chain from the question, the zones the
 * authority section may speak for, the names kept records point to, then
 * the keep decision per record, which depends only on those three lists.
 * When something goes, the message is rebuilt record by record with its
 * names written out again, since a removed record may hold the bytes
 * that a compression pointer of a kept one points to.
 */
#include "autoconf.h"

#include <string.h>

#include "scrub.h"

/** Zones (SOA/NS owners) and pointed-to names kept track of; the rest go. */
#define SCRUB_ZONES_MAX 8
#define SCRUB_POINTED_MAX 32

struct ctx {
	const struct policy *p;
	const uint8_t *msg;
	size_t len;
	uint16_t qtype, qclass;
	size_t qend;                 /**< offset just past the question */
	unsigned count[3];
	bool trusted;                /**< the question is allowed by an explicit rule */
	struct scrub_chain chain;
	unsigned nzone;
	uint16_t zlen[SCRUB_ZONES_MAX];
	uint8_t zone[SCRUB_ZONES_MAX][WIRE_NAME_MAX + 1];
	unsigned npoint;
	uint16_t plen[SCRUB_POINTED_MAX];
	uint8_t point[SCRUB_POINTED_MAX][WIRE_NAME_MAX + 1];
};

/**
 * @return the number of bytes of child's labels above anc when anc is
 * child or one of its ancestors (0 when equal), else -1
 */
static int name_below(const uint8_t *child, size_t clen, const uint8_t *anc, size_t alen)
{
	if (alen > clen)
		return -1;
	for (size_t k = 0; k < clen; k += (size_t)child[k] + 1) {
		if (clen - k == alen)
			return memcmp(child + k, anc, alen) == 0 ? (int)k : -1;
		if (child[k] == 0)
			break;
	}
	return -1;
}

static bool name_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

static int chain_find(const struct scrub_chain *c, const uint8_t *name, size_t len)
{
	for (unsigned i = 0; i < c->n; i++)
		if (name_eq(c->name[i], c->len[i], name, len))
			return (int)i;
	return -1;
}

/** @return true when name is a strict ancestor of a chain name (a DNAME owner that rewrites it). */
static bool chain_has_below(const struct scrub_chain *c, const uint8_t *name, size_t len)
{
	for (unsigned i = 0; i < c->n; i++)
		if (name_below(c->name[i], c->len[i], name, len) > 0)
			return true;
	return false;
}

/** @return true when name is a chain name or one of their ancestors (a zone above the chain). */
static bool chain_enclosed_by(const struct scrub_chain *c, const uint8_t *name, size_t len)
{
	for (unsigned i = 0; i < c->n; i++)
		if (name_below(c->name[i], c->len[i], name, len) >= 0)
			return true;
	return false;
}

static bool chain_add(struct scrub_chain *c, const uint8_t *name, size_t len, bool by_dname)
{
	if (c->n == SCRUB_CHAIN_MAX || chain_find(c, name, len) >= 0)
		return false;
	memcpy(c->name[c->n], name, len);
	c->len[c->n] = (uint16_t)len;
	c->by_dname[c->n] = by_dname;
	c->n++;
	return true;
}

/** Read the header and question.  @return the offset past the question, or 0 */
static size_t read_question(const uint8_t *msg, size_t len, uint8_t *qname, uint16_t *qlen)
{
	size_t pos = WIRE_HDR;
	int n;

	if (len < WIRE_HDR || wire_get16(msg + 4) != 1)
		return 0;
	n = wire_name_read(msg, len, &pos, qname);
	/* Uncompressed, as the cache needs it: a client's spelling goes over it. */
	if (n < 0 || pos - WIRE_HDR != (size_t)n || pos + 4 > len)
		return 0;
	*qlen = (uint16_t)n;
	return pos + 4;
}

int scrub_rdata_target(const uint8_t *msg, size_t len, const struct wire_rr *rr, uint8_t *target)
{
	size_t p = rr->rdata, end = rr->rdata + rr->rdlen;
	bool root_is_none = true;
	int n;

	switch (rr->type) {
	case LDNS_RR_TYPE_CNAME:
	case LDNS_RR_TYPE_DNAME:
		root_is_none = false;
		break;
	case LDNS_RR_TYPE_SVCB:
	case LDNS_RR_TYPE_HTTPS:
		/* SvcPriority, then TargetName; "." names the owner itself
		 * (RFC 9460 2.5), which is no new name.  SvcParams follow. */
		if (rr->rdlen < 3)
			return -1;
		p += 2;
		n = wire_name_read(msg, len, &p, target);
		if (n < 0 || p > end)
			return -1;
		return n == 1 ? 0 : n;
	case LDNS_RR_TYPE_MX:
		p += 2;   /* preference; "." is a null MX (RFC 7505) */
		break;
	case LDNS_RR_TYPE_SRV:
		p += 6;   /* priority, weight, port; "." says no service (RFC 2782) */
		break;
	case LDNS_RR_TYPE_NAPTR:
		/* order, preference, then flags, services and regexp as
		 * character-strings, then the replacement (RFC 3403 4.1). */
		p += 4;
		for (int i = 0; i < 3; i++) {
			if (p >= end)
				return -1;
			p += 1 + (size_t)msg[p];
		}
		break;
	default:
		return 0;
	}
	if (p >= end)
		return -1;
	n = wire_name_read(msg, len, &p, target);
	if (n < 0 || p != end)
		return -1;
	return root_is_none && n == 1 ? 0 : n;
}

int scrub_chain_walk(const uint8_t *msg, size_t len, struct scrub_chain *c)
{
	uint8_t owner[WIRE_NAME_MAX + 1], target[WIRE_NAME_MAX + 1], rewritten[WIRE_NAME_MAX + 1];
	struct wire_rr rr;
	size_t start = read_question(msg, len, c->name[0], &c->len[0]);
	unsigned an;
	bool grew = true;

	c->n = 0;
	if (!start)
		return -1;
	c->n = 1;
	c->by_dname[0] = false;
	an = wire_get16(msg + 6);
	uint16_t qclass = wire_get16(msg + start - 2);
	/* Records may come in any order: go round until the chain stops
	 * growing.  It grows at most SCRUB_CHAIN_MAX times. */
	while (grew) {
		size_t pos = start;
		grew = false;
		for (unsigned i = 0; i < an; i++) {
			if (wire_rr_next(msg, len, &pos, &rr) < 0)
				return -1;
			if ((rr.type != LDNS_RR_TYPE_CNAME && rr.type != LDNS_RR_TYPE_DNAME) ||
			    rr.rclass != qclass)
				continue;
			size_t o = rr.owner;
			int olen = wire_name_read(msg, len, &o, owner);
			int tlen = scrub_rdata_target(msg, len, &rr, target);
			if (olen < 0 || tlen <= 0)
				continue; /* an unreadable target is the chain check's to deny */
			if (rr.type == LDNS_RR_TYPE_CNAME) {
				if (chain_find(c, owner, (size_t)olen) >= 0)
					grew |= chain_add(c, target, (size_t)tlen, false);
				continue;
			}
			/* RFC 6672 2.2: a name below the owner is rewritten by
			 * replacing the owner's labels with the target's. */
			for (unsigned j = 0; j < c->n; j++) {
				int k = name_below(c->name[j], c->len[j], owner, (size_t)olen);
				if (k <= 0 || (size_t)k + (size_t)tlen > WIRE_NAME_MAX)
					continue;
				memcpy(rewritten, c->name[j], (size_t)k);
				memcpy(rewritten + k, target, (size_t)tlen);
				grew |= chain_add(c, rewritten, (size_t)k + (size_t)tlen, true);
			}
		}
	}
	return 0;
}

int scrub_chain_invalid(const struct scrub_chain *c)
{
	static const uint8_t invalid[] = { 7, 'i', 'n', 'v', 'a', 'l', 'i', 'd', 0 };

	for (unsigned i = 1; i < c->n; i++)
		if (name_below(c->name[i], c->len[i], invalid, sizeof(invalid)) >= 0)
			return (int)i;
	return -1;
}

static enum verdict decide(const struct ctx *x, const uint8_t *name, size_t len, bool *by_rule)
{
	struct policy_decision d;

	policy_decide(x->p, name, len, &d);
	if (by_rule)
		*by_rule = d.kind >= 0;
	return d.verdict;
}

/** A deny rule (not allowlist mode's default) names it. */
static bool rule_denied(const struct ctx *x, const uint8_t *name, size_t len)
{
	bool by_rule;

	return decide(x, name, len, &by_rule) == VERDICT_DENY && by_rule;
}

static bool is_dnssec_proof(uint16_t type)
{
	return type == LDNS_RR_TYPE_DS || type == LDNS_RR_TYPE_NSEC ||
	       type == LDNS_RR_TYPE_NSEC3 || type == LDNS_RR_TYPE_RRSIG;
}

/** Does a record stay?  Depends only on the chain, zone and pointed lists. */
static bool keep(const struct ctx *x, int section, const struct wire_rr *rr, const uint8_t *owner,
		 size_t olen)
{
	if (rr->rclass != x->qclass)
		return false;
	if (section == 0) {
		if (chain_find(&x->chain, owner, olen) >= 0)
			return rr->type == LDNS_RR_TYPE_CNAME || rr->type == x->qtype ||
			       x->qtype == LDNS_RR_TYPE_ANY || rr->type == LDNS_RR_TYPE_RRSIG;
		/* The DNAMEs that rewrite a chain name, and their signatures. */
		return (rr->type == LDNS_RR_TYPE_DNAME || rr->type == LDNS_RR_TYPE_RRSIG) &&
		       chain_has_below(&x->chain, owner, olen);
	}
	if (section == 1) {
		/* Zone data never leads a client to an address, but a name a
		 * rule denies owns nothing that we pass on. */
		if (rule_denied(x, owner, olen))
			return false;
		if (rr->type == LDNS_RR_TYPE_SOA || rr->type == LDNS_RR_TYPE_NS)
			return chain_enclosed_by(&x->chain, owner, olen);
		if (!is_dnssec_proof(rr->type))
			return false;
		for (unsigned i = 0; i < x->nzone; i++)
			if (name_below(owner, olen, x->zone[i], x->zlen[i]) >= 0)
				return true;
		return false;
	}
	/* Additional: addresses (and their signatures) for a name a kept record points to. */
	if (rr->type != LDNS_RR_TYPE_A && rr->type != LDNS_RR_TYPE_AAAA &&
	    rr->type != LDNS_RR_TYPE_RRSIG)
		return false;
	bool pointed = false;
	for (unsigned i = 0; i < x->npoint && !pointed; i++)
		pointed = name_eq(owner, olen, x->point[i], x->plen[i]);
	if (!pointed)
		return false;
	if (x->trusted && chain_find(&x->chain, owner, olen) >= 0)
		return true;
	return decide(x, owner, olen, NULL) != VERDICT_DENY;
}

/** Add the name a kept record points to (NS, MX, SRV, SVCB/HTTPS, NAPTR targets). */
static void add_pointed(struct ctx *x, const struct wire_rr *rr, const uint8_t *owner, size_t olen)
{
	uint8_t name[WIRE_NAME_MAX + 1];
	int n;

	if (rr->type == LDNS_RR_TYPE_NS) {
		size_t p = rr->rdata;
		n = wire_name_read(x->msg, x->len, &p, name);
	} else if (rr->type == LDNS_RR_TYPE_CNAME || rr->type == LDNS_RR_TYPE_DNAME) {
		return; /* the chain already holds them */
	} else {
		n = scrub_rdata_target(x->msg, x->len, rr, name);
		if (n == 0 && (rr->type == LDNS_RR_TYPE_SVCB || rr->type == LDNS_RR_TYPE_HTTPS)) {
			memcpy(name, owner, olen); /* "." names the owner (RFC 9460 2.5) */
			n = (int)olen;
		}
	}
	if (n <= 0 || x->npoint == SCRUB_POINTED_MAX)
		return;
	for (unsigned i = 0; i < x->npoint; i++)
		if (name_eq(name, (size_t)n, x->point[i], x->plen[i]))
			return;
	memcpy(x->point[x->npoint], name, (size_t)n);
	x->plen[x->npoint++] = (uint16_t)n;
}

/**
 * Visit every record: fn(x, section, rr, owner, olen).
 * @return 0, or -1 when a record cannot be read
 */
static int each_record(struct ctx *x, void (*fn)(struct ctx *, int, const struct wire_rr *,
						 const uint8_t *, size_t))
{
	uint8_t owner[WIRE_NAME_MAX + 1];
	size_t pos = x->qend;
	struct wire_rr rr;

	for (int s = 0; s < 3; s++) {
		for (unsigned i = 0; i < x->count[s]; i++) {
			if (wire_rr_next(x->msg, x->len, &pos, &rr) < 0)
				return -1;
			size_t o = rr.owner;
			int olen = wire_name_read(x->msg, x->len, &o, owner);
			if (olen < 0)
				return -1;
			fn(x, s, &rr, owner, (size_t)olen);
		}
	}
	return 0;
}

static void collect_zone(struct ctx *x, int section, const struct wire_rr *rr,
			 const uint8_t *owner, size_t olen)
{
	if (section != 1 || x->nzone == SCRUB_ZONES_MAX ||
	    (rr->type != LDNS_RR_TYPE_SOA && rr->type != LDNS_RR_TYPE_NS) ||
	    !keep(x, section, rr, owner, olen))
		return;
	for (unsigned i = 0; i < x->nzone; i++)
		if (name_eq(owner, olen, x->zone[i], x->zlen[i]))
			return;
	memcpy(x->zone[x->nzone], owner, olen);
	x->zlen[x->nzone++] = (uint16_t)olen;
}

static void collect_pointed(struct ctx *x, int section, const struct wire_rr *rr,
			    const uint8_t *owner, size_t olen)
{
	if (section < 2 && keep(x, section, rr, owner, olen))
		add_pointed(x, rr, owner, olen);
}

/* A file-scope counter would not be reentrant: the removal counts live in
 * the result the caller passed, reached through this small wrapper. */
struct count_ctx {
	struct ctx x;
	struct scrub_result *r;
};

static void count_removed(struct ctx *x, int section, const struct wire_rr *rr,
			  const uint8_t *owner, size_t olen)
{
	struct count_ctx *cc = (struct count_ctx *)x;

	if (rr->type == LDNS_RR_TYPE_OPT && section == 2)
		return; /* not a record: the cache strips it either way */
	if (!keep(x, section, rr, owner, olen))
		cc->r->removed[section]++;
}

/* ---- rebuilding ---- */

struct writer {
	uint8_t *out;
	size_t len, max;
	bool full;
	const uint8_t *qname;        /**< the question as written at WIRE_HDR, lowercase */
	size_t qlen;
};

static void put(struct writer *w, const void *data, size_t n)
{
	if (w->full || w->len + n > w->max) {
		w->full = true;
		return;
	}
	memcpy(w->out + w->len, data, n);
	w->len += n;
}

/**
 * Write a name, ending in a pointer to the question when its tail is a
 * tail of the question's name and compress allows (RFC 3597 4: only the
 * RFC 1035 types may carry pointers in RDATA).
 */
static void put_name(struct writer *w, const uint8_t *name, size_t len, bool compress)
{
	for (size_t k = 0; compress && k + 1 < len; k += (size_t)name[k] + 1) {
		size_t tail = len - k;
		int j = name_below(w->qname, w->qlen, name + k, tail);
		if (j >= 0) {
			uint8_t ptr[2];
			put(w, name, k);
			wire_put16(ptr, (uint16_t)(0xc000 | (WIRE_HDR + (size_t)j)));
			put(w, ptr, 2);
			return;
		}
	}
	put(w, name, len);
}

/**
 * How a type's RDATA is laid out: prefix bytes, then names, then a tail.
 * @return false for types copied as they stand (no names, or names never
 *         compressed per RFC 3597)
 */
static bool rdata_shape(const uint8_t *msg, const struct wire_rr *rr, size_t *prefix, int *names,
			bool *compress, int *tail)
{
	*prefix = 0;
	*names = 1;
	*compress = true;
	*tail = 0;      /* bytes that must follow the names; -1: any */
	switch (rr->type) {
	case LDNS_RR_TYPE_CNAME: case LDNS_RR_TYPE_NS: case LDNS_RR_TYPE_PTR:
	case LDNS_RR_TYPE_MB: case LDNS_RR_TYPE_MG: case LDNS_RR_TYPE_MR:
	case LDNS_RR_TYPE_MD: case LDNS_RR_TYPE_MF:
		return true;
	case LDNS_RR_TYPE_MX:
		*prefix = 2;
		return true;
	case LDNS_RR_TYPE_SOA:
		*names = 2;
		*tail = 20;
		return true;
	case LDNS_RR_TYPE_MINFO:
		*names = 2;
		return true;
	/* Types that RFC 3597 lets a decoder decompress, written uncompressed. */
	case LDNS_RR_TYPE_DNAME:
		*compress = false;
		return true;
	case LDNS_RR_TYPE_RP:
		*names = 2;
		*compress = false;
		return true;
	case LDNS_RR_TYPE_AFSDB: case LDNS_RR_TYPE_RT: case LDNS_RR_TYPE_KX:
		*prefix = 2;
		*compress = false;
		return true;
	case LDNS_RR_TYPE_PX:
		*prefix = 2;
		*names = 2;
		*compress = false;
		return true;
	case LDNS_RR_TYPE_SRV:
		*prefix = 6;
		*compress = false;
		return true;
	case LDNS_RR_TYPE_SVCB: case LDNS_RR_TYPE_HTTPS:
		*prefix = 2;
		*compress = false;
		*tail = -1;
		return true;
	case LDNS_RR_TYPE_NAPTR: {
		size_t p = 4, end = rr->rdlen;
		for (int i = 0; i < 3 && p < end; i++)
			p += 1 + (size_t)msg[rr->rdata + p];
		*prefix = p;
		*compress = false;
		return true;
	}
	default:
		return false;
	}
}

/** Write one record.  @return 0, or -1 when its RDATA cannot be read or w is full */
static int put_record(struct writer *w, const struct ctx *x, const struct wire_rr *rr,
		      const uint8_t *owner, size_t olen)
{
	uint8_t name[WIRE_NAME_MAX + 1], rdlen[2];
	size_t prefix, end = rr->rdata + rr->rdlen;
	int names, tail;
	bool compress;

	put_name(w, owner, olen, true);
	put(w, x->msg + rr->fixed, 8);   /* type, class, TTL */
	size_t at = w->len;
	put(w, "\0\0", 2);
	if (!rdata_shape(x->msg, rr, &prefix, &names, &compress, &tail)) {
		put(w, x->msg + rr->rdata, rr->rdlen);
	} else {
		size_t p = rr->rdata + prefix;
		if (p >= end)
			return -1;
		put(w, x->msg + rr->rdata, prefix);
		for (int i = 0; i < names; i++) {
			int n = wire_name_read(x->msg, x->len, &p, name);
			if (n < 0 || p > end)
				return -1;
			put_name(w, name, (size_t)n, compress);
		}
		if (tail >= 0 && end - p != (size_t)tail)
			return -1;
		put(w, x->msg + p, end - p);
	}
	if (w->full || w->len - at - 2 > UINT16_MAX)
		return -1;
	wire_put16(rdlen, (uint16_t)(w->len - at - 2));
	memcpy(w->out + at, rdlen, 2);
	return 0;
}

enum scrub_status scrub_answer(const struct policy *p, const uint8_t *msg, size_t len,
			       uint8_t *out, size_t max, size_t *out_len, struct scrub_result *r)
{
	struct count_ctx cc;
	struct ctx *x = &cc.x;
	struct scrub_result none;

	if (!r)
		r = &none;
	memset(r, 0, sizeof(*r));
	cc.r = r;
	x->p = p;
	x->msg = msg;
	x->len = len;
	x->nzone = x->npoint = 0;
	if (scrub_chain_walk(msg, len, &x->chain) < 0)
		return SCRUB_MALFORMED;
	x->qend = read_question(msg, len, x->chain.name[0], &x->chain.len[0]);
	x->qtype = wire_get16(msg + x->qend - 4);
	x->qclass = wire_get16(msg + x->qend - 2);
	for (int s = 0; s < 3; s++)
		x->count[s] = wire_get16(msg + 6 + 2 * s);
	x->trusted = decide(x, x->chain.name[0], x->chain.len[0], NULL) == VERDICT_ALLOW;

	/* Zones matter only to the authority section, pointed names only to
	 * the additional: most answers have neither, and skip those passes. */
	if ((x->count[1] && each_record(x, collect_zone) < 0) ||
	    (x->count[2] && each_record(x, collect_pointed) < 0) ||
	    each_record(x, count_removed) < 0)
		return SCRUB_MALFORMED;
	if (r->removed[0] + r->removed[1] + r->removed[2] == 0)
		return SCRUB_CLEAN;

	struct writer w = { out, 0, max, false, x->chain.name[0], x->chain.len[0] };
	uint8_t owner[WIRE_NAME_MAX + 1];
	uint16_t kept[3] = { 0, 0, 0 };
	size_t pos = x->qend;
	struct wire_rr rr;

	put(&w, msg, x->qend);   /* header (counts set below) and question */
	for (int s = 0; s < 3; s++) {
		for (unsigned i = 0; i < x->count[s]; i++) {
			if (wire_rr_next(msg, len, &pos, &rr) < 0)
				return SCRUB_MALFORMED;
			size_t o = rr.owner;
			int olen = wire_name_read(msg, len, &o, owner);
			if (olen < 0)
				return SCRUB_MALFORMED;
			if (!keep(x, s, &rr, owner, (size_t)olen))
				continue;
			if (put_record(&w, x, &rr, owner, (size_t)olen) < 0)
				return w.full ? SCRUB_MALFORMED : SCRUB_UNREADABLE;
			kept[s]++;
		}
	}
	if (w.full)
		return SCRUB_MALFORMED;
	for (int s = 0; s < 3; s++)
		wire_put16(out + 6 + 2 * s, kept[s]);
	*out_len = w.len;
	return SCRUB_REWRITTEN;
}
