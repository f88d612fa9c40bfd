/* A client's packet through parsing, access, policy, local and denied
 * answers, the cache, and the SERVFAIL path, over "UDP" (replies limited to
 * what the client advertised, sent to a closed socket) and with no
 * transport (replies up to 64 KiB, dropped). */
#include "autoconf.h"

#include "fuzz_common.h"
#include "query.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct listener closed_udp = { .udp_fd = -1 };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_server_init();
	closed_udp.srv = &fuzz_srv;
	/* One cached answer so the hit path runs too: www.example.com/A. */
	static const uint8_t reply[] = {
		0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
		3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1,
		0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 192, 0, 2, 1,
	};
	static struct cache_answer a;
	if (cache_prepare(reply, sizeof(reply), &fuzz_srv.ttl, &a) == 0) {
		struct cache_key k = { reply + 12, 17, 1, 1, 0 };
		cache_insert(fuzz_srv.cache, &k, &a, server_now_ms(), 3600, 1);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reply_to rt = { 0 };
	struct sockaddr_in *peer = (struct sockaddr_in *)&rt.peer;

	peer->sin_family = AF_INET;
	peer->sin_addr.s_addr = htonl(0x7f000001);
	rt.peer_len = sizeof(*peer);
	query_handle(&fuzz_srv, data, size, &rt);
	rt.udp = &closed_udp;
	query_handle(&fuzz_srv, data, size, &rt);
	/* From outside `access`: REFUSED, whatever the packet. */
	peer->sin_addr.s_addr = htonl(0x0a000001);
	query_handle(&fuzz_srv, data, size, &rt);
	return 0;
}
