/**
 * \file wire.h
 * DNS wire format: names as length-prefixed labels, the question of a
 * query, walking resource records, and the pieces of a reply.  Names are
 * handled as wire labels, never as C strings, so a label holding '.' or
 * NUL cannot be confused with a label boundary.  No allocation here: the
 * query path calls these for every packet.
 */
#ifndef ACRDNS_WIRE_H
#define ACRDNS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ldns/ldns.h>

#define WIRE_HDR 12
#define WIRE_NAME_MAX 255
/** The UDP payload size advertised to clients and upstreams (DNS flag day 2020). */
#define WIRE_EDNS_SIZE 1232
#define WIRE_UDP_PLAIN 512
/** Longest name in presentation format, with every byte escaped as \DDD. */
#define WIRE_NAME_STRLEN (WIRE_NAME_MAX * 4 + 2)

/* Header flag bits in the 16-bit flags word. */
#define WIRE_QR 0x8000
#define WIRE_AA 0x0400
#define WIRE_TC 0x0200
#define WIRE_RD 0x0100
#define WIRE_RA 0x0080
#define WIRE_AD 0x0020
#define WIRE_CD 0x0010
#define WIRE_OPCODE(f) (((f) >> 11) & 0xf)
#define WIRE_RCODE(f) ((f) & 0xf)

#define EDE_BLOCKED 15

static inline uint16_t wire_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t wire_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
}

static inline void wire_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wire_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/**
 * Read a name at *pos, following compression pointers.
 * @param out 256 bytes or NULL; receives the uncompressed name in lowercase
 * @return the name's wire length (1 for the root), or -1 when malformed;
 *         *pos is moved past the name as it stands in the message
 */
int wire_name_read(const uint8_t *msg, size_t len, size_t *pos, uint8_t *out);

/** Lowercase ASCII letters of a wire name in place; other bytes stay. */
void wire_name_lower(uint8_t *name, size_t len);

/** @return number of labels in a wire name, the root not counted. */
int wire_name_labels(const uint8_t *name);

/**
 * Is name the zone or below it?  Compared label by label from the name's
 * start, ASCII case ignored, so that "xprivatelink.azurecr.io" is not
 * under "privatelink.azurecr.io" and a label holding a dot stays one label.
 * @param name, zone uncompressed wire names of len and zlen bytes
 *        (the root, "\0", holds every name)
 */
bool wire_name_under(const uint8_t *name, size_t len, const uint8_t *zone, size_t zlen);

/**
 * Presentation form with a trailing dot; bytes outside letters, digits,
 * '-' and '_' are escaped (\. \\ \DDD), so the text is unambiguous.
 * @param buf at least WIRE_NAME_STRLEN bytes
 */
void wire_name_str(const uint8_t *name, char *buf);

/**
 * Parse a presentation-format name (escapes allowed, trailing dot
 * optional) into lowercase wire form with ldns.
 * @param out 256 bytes
 * @return wire length, or -1 when it is not a valid name
 */
int wire_name_from_str(const char *text, uint8_t *out);

/**
 * The mnemonic of an RR type ("AAAA"), or "TYPE65280" for one ldns does not know.
 * @param buf 16 bytes, used only for the second form
 */
const char *wire_type_str(uint16_t type, char *buf);

/** One resource record as it stands in a message. */
struct wire_rr {
	size_t owner;   /**< offset of the owner name */
	size_t fixed;   /**< offset of TYPE; TTL is at fixed + 4 */
	uint16_t type;
	uint16_t rclass;
	uint32_t ttl;
	size_t rdata;   /**< offset of RDATA */
	uint16_t rdlen;
};

/**
 * @return true for the types whose RDATA names a target that a client
 * goes on to: CNAME, DNAME, SVCB and HTTPS (RFC 9460 TargetName), and
 * SRV, MX and NAPTR (a client connects to the host they name, with the
 * addresses the additional section offers for it).
 */
static inline bool wire_type_has_target(uint16_t type)
{
	return type == LDNS_RR_TYPE_CNAME || type == LDNS_RR_TYPE_DNAME ||
	       type == LDNS_RR_TYPE_SVCB || type == LDNS_RR_TYPE_HTTPS ||
	       type == LDNS_RR_TYPE_SRV || type == LDNS_RR_TYPE_MX ||
	       type == LDNS_RR_TYPE_NAPTR;
}

/**
 * Read the record at *pos and move past it.
 * @return 0, or -1 when the record does not fit or its owner is malformed
 */
int wire_rr_next(const uint8_t *msg, size_t len, size_t *pos, struct wire_rr *rr);

/** What a query asks, as parsed from the client's packet. */
struct wire_query {
	uint16_t id;
	uint16_t flags;
	uint16_t qtype;
	uint16_t qclass;
	uint16_t qname_len;
	uint16_t qend;                     /**< offset just past the question */
	uint8_t qname[WIRE_NAME_MAX + 1];  /**< lowercase wire name */
	uint8_t qname_raw[WIRE_NAME_MAX + 1]; /**< as the client spelled it */
	bool edns;
	bool edns_do;
	uint8_t edns_version;
	uint16_t edns_size;
	bool has_question;                 /**< qname/qtype/qclass are valid */
};

enum wire_query_status {
	WIRE_Q_OK,
	WIRE_Q_DROP,     /**< no header to answer, or a response (QR=1) */
	WIRE_Q_FORMERR,
	WIRE_Q_NOTIMP,   /**< opcode other than QUERY */
	WIRE_Q_BADVERS,  /**< EDNS version above 0 */
};

/**
 * Parse a client query: header, one question, EDNS from the OPT record.
 * An opcode other than QUERY is WIRE_Q_NOTIMP whatever the counts; for it
 * and for WIRE_Q_FORMERR, q holds what could be read (the question, EDNS
 * from an OPT read whole), so that the reply can echo them.
 */
enum wire_query_status wire_query_parse(const uint8_t *msg, size_t len,
					struct wire_query *q);

/**
 * Start a reply to q: header (QR, opcode, RD from the query, the given
 * rcode, and for opcode QUERY only, RA and the query's CD) and, when q
 * has one, the question as the client spelled it.  Counts other than
 * QDCOUNT are zero.
 * @return bytes written (out must hold WIRE_HDR + 4 + 256)
 */
size_t wire_reply_begin(uint8_t *out, const struct wire_query *q, uint16_t rcode);

/** Add one to the 16-bit section count at offset off (6 AN, 8 NS, 10 AR). */
void wire_count_inc(uint8_t *msg, size_t off);

/**
 * Append an OPT record advertising WIRE_EDNS_SIZE.
 * @param ext_rcode upper 8 bits of a 12-bit rcode (1 for BADVERS)
 * @param ede_text NULL for no Extended DNS Error option
 * @return new length, or 0 when it does not fit in max
 */
size_t wire_opt_append(uint8_t *msg, size_t len, size_t max, uint8_t ext_rcode,
		       bool do_bit, uint16_t ede_code, const char *ede_text);

#endif
